"""The raw contracts, the warehouse DDL and dbt's sources must describe the same tables."""

import yaml

from pipelines.lib.contracts import AMAZON_COLUMNS, CDC_TABLES, FILE_SOURCES, all_raw_tables
from pipelines.lib.warehouse import connect, initialize
from pipelines.settings import DBT_PROJECT_DIR


def test_dbt_sources_match_contracts():
    sources = yaml.safe_load((DBT_PROJECT_DIR / "models/staging/_sources.yml").read_text())
    (raw,) = [s for s in sources["sources"] if s["name"] == "raw"]
    assert {t["name"] for t in raw["tables"]} == set(all_raw_tables())


def test_warehouse_creates_every_raw_table_idempotently(tmp_path):
    db = tmp_path / "wh.duckdb"
    initialize(db)
    initialize(db)  # second time: nothing changes, nothing fails
    con = connect(db, read_only=True)
    tables = {
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        ).fetchall()
    }
    assert tables == set(all_raw_tables())
    cols = [
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'amazon_returns' order by ordinal_position"
        ).fetchall()
    ]
    con.close()
    assert cols[-len(AMAZON_COLUMNS) :] == [name for name, _ in AMAZON_COLUMNS.values()]


def test_bare_envelope_scales_come_from_the_contract():
    by_name = {t.raw_table: t for t in CDC_TABLES}
    assert by_name["erp_sale_line"].scale("unit_price") == 4
    assert by_name["erp_account_invoice"].scale("total_amount_cache") == 2
    assert by_name["wms_receipts"].scale("quantity") == 3
    assert by_name["erp_sale_line"].scale("quantity") is None  # a double, not a decimal
    assert {t.topic for t in CDC_TABLES} >= {"erp.public.sale_sale", "wms.public.inspections"}
    assert all(f.required and set(f.required) <= set(f.columns) for f in FILE_SOURCES)
