"""Publishing the marts for analysts: atomic, complete, and without personal data."""

import duckdb
import pytest

from pipelines.lib.publish import publish


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""
        create schema marts;
        create schema recon;
        create schema staging;
        create table marts.returns as
            select 'k1' as return_key, 'LR-1' as rma_number, '#1001' as order_name,
                   'Jane Doe' as customer_name, 'jane@example.com' as customer_email;
        create table recon.mismatches as select 'm1' as mismatch_id, 'stale_return' as rule;
        create table recon.recon_run as
            select timestamptz '2026-11-01 00:00:00+00' as as_of, 24 as posting_grace_h;
        create table staging.stg_erp__parties as select 'Jane Doe' as name;
    """)
    con.close()
    return path


def test_publishes_marts_and_recon_only(warehouse, tmp_path):
    target = tmp_path / "out" / "analyst.duckdb"
    result = publish(warehouse, target)
    assert result.tables == {"marts.returns": 1, "recon.mismatches": 1, "recon.recon_run": 1}
    con = duckdb.connect(str(target), read_only=True)
    tables = {
        f"{s}.{t}"
        for s, t in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
    }
    assert tables == {"marts.returns", "recon.mismatches", "recon.recon_run", "main.published"}
    assert con.execute("select as_of from published").fetchone()[0] == "2026-11-01T00:00:00+00:00"
    con.close()


def test_personal_data_columns_are_withheld(warehouse, tmp_path):
    target = tmp_path / "analyst.duckdb"
    result = publish(warehouse, target)
    assert sorted(result.withheld_columns) == [
        "marts.returns.customer_email",
        "marts.returns.customer_name",
    ]
    con = duckdb.connect(str(target), read_only=True)
    row = con.execute("select * from marts.returns").fetchone()
    con.close()
    assert row == ("k1", "LR-1", "#1001")  # order_name is not personal data and stays


def test_republish_replaces_atomically_and_leaves_no_temporary_files(warehouse, tmp_path):
    target = tmp_path / "analyst.duckdb"
    publish(warehouse, target)
    reader = duckdb.connect(str(target), read_only=True)  # an analyst with the old version open
    con = duckdb.connect(str(warehouse))
    con.execute("insert into recon.mismatches values ('m2', 'unmapped_sku')")
    con.close()
    publish(warehouse, target)
    # the open reader keeps its consistent old version ...
    assert reader.execute("select count(*) from recon.mismatches").fetchone()[0] == 1
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analyst.duckdb", "warehouse.duckdb"]


def test_a_failed_publish_keeps_the_previous_version(warehouse, tmp_path):
    target = tmp_path / "analyst.duckdb"
    publish(warehouse, target)
    before = target.read_bytes()
    with pytest.raises(duckdb.Error):
        publish(tmp_path / "missing" / "warehouse.duckdb", target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analyst.duckdb", "warehouse.duckdb"]
