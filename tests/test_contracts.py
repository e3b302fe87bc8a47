"""The raw contracts, the warehouse DDL and dbt's sources must describe the same tables."""

from pathlib import Path

import yaml

from pipelines.lib.contracts import (
    AMAZON_COLUMNS,
    CDC_TABLES,
    DBT_SOURCES_PATH,
    FILE_SOURCES,
    FORMATS,
    all_raw_tables,
    dbt_sources_yml,
)
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


def test_dbt_sources_yml_is_generated_from_the_registry():
    """`models/staging/_sources.yml` is written from the registry; regenerate it with
    `python -m pipelines.lib.contracts` (make sources-yml) after changing a contract."""
    committed = (DBT_PROJECT_DIR / DBT_SOURCES_PATH).read_text(encoding="utf-8")
    assert committed == dbt_sources_yml(), (
        "dbt_project/models/staging/_sources.yml is out of date: run "
        "`.venv/bin/python -m pipelines.lib.contracts`"
    )
    raw = yaml.safe_load(committed)["sources"][0]["tables"]
    meta = {t["name"]: t["config"]["meta"] for t in raw}
    assert {n for n, m in meta.items() if m["kind"] == "file"} == {
        f.raw_table for f in FILE_SOURCES
    }
    assert meta["amazon_returns"] == {
        "kind": "file", "source": "amazon", "format": "tsv", "channel": "amazon"
    }  # fmt: skip


def test_every_file_source_has_a_parser_and_a_staging_folder():
    for f in FILE_SOURCES:
        assert f.format in FORMATS, f"{f.raw_table}: no parser for .{f.format}"
        staging = DBT_PROJECT_DIR / "models" / "staging" / f.folder
        assert staging.is_dir(), f"{f.raw_table}: no staging folder {staging}"
        assert any(f"source('raw', '{f.raw_table}')" in p.read_text() for p in
                   staging.glob("*.sql")), f"no staging model reads raw.{f.raw_table}"  # fmt: skip
        checked = {*f.value_sets, *f.positive, *f.non_negative, *f.not_null}
        assert checked <= set(f.columns), f.raw_table


def test_the_channel_unions_read_every_channel_source_and_no_other(dbt_manifest):
    """The unions in models/intermediate/channels/ hold each channel's own mapping (its statuses,
    its grouping); the registry says which sources carry channel returns (`channel`), and the
    unions must read exactly those through their staging models."""
    import json

    manifest = json.loads(Path(dbt_manifest).read_text())
    nodes = manifest["nodes"]
    channel_tables = {f.raw_table for f in FILE_SOURCES if f.channel}
    for union in ("int_channel_returns_unioned", "int_channel_return_lines_unioned"):
        (node,) = [
            n for n in nodes.values() if n["resource_type"] == "model" and n["name"] == union
        ]
        read: set[str] = set()
        todo = list(node["depends_on"]["nodes"])
        while todo:  # through staging models (one may read another) down to the raw sources
            parent = todo.pop()
            if parent.startswith("source."):
                read.add(manifest["sources"][parent]["name"])
            elif parent.startswith("model.") and nodes[parent]["name"].startswith("stg_"):
                todo += nodes[parent]["depends_on"]["nodes"]
        read -= {"sku_crosswalk"}  # the lines' SKU mapping, not a channel
        assert read == channel_tables, (
            f"{union} reads {sorted(read)}; the registry's channel sources are "
            f"{sorted(channel_tables)} (pipelines/lib/contracts.py, FileSource.channel)"
        )
