"""The analyst copy is republished incrementally and equals a publish from scratch (issue 24).

One warehouse goes through several increments; after each, it is published incrementally (from
the previous published file) and from scratch (`incremental=False`, into another file), and the
two files must hold the same tables, columns, types and rows (as multisets), the same freshness
and the same `main.published` (but its time). The increments: rows changed, added and removed,
a mismatch resolved and then reopened (its row as it was before), raw rows landed out of order
(an older landing time than the newest, and a tie on the newest time with a higher offset), a
duplicated row gaining a copy, a column added, a table gone and a new one, write-back documents
sent. Then: a publish after a one-row change writes that row only, and leaves the storage blocks
of every unchanged table as they were in the published file (not rewritten).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from pipelines.lib import publish as publish_module
from pipelines.lib.publish import (
    PUBLISHED_SCHEMAS,
    SCOPED_TABLES,
    UNPUBLISHED_TABLES,
    publish,
)

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)


def _warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        """
        create schema marts; create schema recon; create schema raw; create schema writeback;
        create table marts.returns as
            select 'k' || i as return_key, 'LR-' || i as rma_number, 'requested' as status,
                   (i * 1.25)::decimal(18,4) as amount, 'EUR' as currency,
                   'Jane ' || i as customer_name
            from range(1, 41) as r(i);
        insert into marts.returns select * from marts.returns where return_key = 'k1';
        create table marts.return_lines as
            select 'l' || i as return_line_key, 'k' || (i % 40 + 1) as return_key,
                   'SKU-' || (i % 7) as sku, i % 3 as qty, 'damaged' as reason,
                   'it came broken' as reason_raw
            from range(1, 101) as r(i);
        create table marts.returns_kpis as select 'EUR' as currency, 40 as returns;
        create table recon.mismatches as
            select 'm' || i as mismatch_id, 'receipt_not_posted' as rule, 'LR-' || i as rma_number,
                   'open' as status, null::timestamptz as resolved_at
            from range(1, 21) as r(i);
        create table recon.recon_run as
            select timestamptz '2026-11-20 00:00:00+00' as as_of, 24 as posting_grace_h;
        create table recon.adjustment_candidates as select 'm1' as mismatch_id, 1 as party_id;
        create table raw.erp_stock_move (
            id bigint, _topic varchar, _partition integer, _offset bigint,
            _ingested_at timestamptz);
        insert into raw.erp_stock_move
            select i, 'erp.stock_move', 0, i, timestamptz '2026-11-20 08:00:00+00'
            from range(1, 51) as r(i);
        create table raw.amazon_returns (
            id varchar, _file_sha256 varchar, _row_number bigint, _ingested_at timestamptz);
        insert into raw.amazon_returns
            values ('a1', 'f00d', 1, timestamptz '2026-11-20 08:00:00+00');
        create table raw.wms_receipts (id bigint, _topic varchar, _partition integer,
            _offset bigint, _ingested_at timestamptz);
        create table writeback.adjustments (
            adjustment_id varchar, mismatch_id varchar, rma_number varchar, sku varchar,
            action varchar, status varchar, erp_document json, sent_at timestamptz,
            created_at timestamptz, updated_at timestamptz, payload json);
        insert into writeback.adjustments values
            ('adj-1', 'm1', 'LR-1', 'SKU-1', 'create_credit_note', 'approved', null, null,
             timestamptz '2026-11-20 08:00:00+00', timestamptz '2026-11-20 08:00:00+00',
             '{"party": 7}');
        """
    )
    con.close()


def _increment(path: Path, step: int) -> None:
    con = duckdb.connect(str(path))
    at = T0 + timedelta(hours=step)
    if step == 1:  # rows changed, added, removed; a mismatch resolved; raw rows landed
        con.execute("update marts.returns set status = 'received' where return_key in ('k2', 'k3')")
        con.execute("insert into marts.returns values ('k41', 'LR-41', 'requested', 2, 'GBP', 'X')")
        con.execute("delete from marts.return_lines where return_line_key = 'l5'")
        con.execute(
            "update recon.mismatches set status = 'resolved', resolved_at = ? "
            "where mismatch_id = 'm3'",
            [at],
        )
        con.execute(
            "insert into raw.erp_stock_move select i, 'erp.stock_move', 0, i, ? "
            "from range(51, 61) as r(i)",
            [at],
        )
        con.execute("insert into raw.wms_receipts values (1, 'wms.receipts', 0, 1, ?)", [at])
    elif step == 2:  # reopened as it was; out-of-order landing; a copy of a duplicated row
        con.execute(
            "update recon.mismatches set status = 'open', resolved_at = null "
            "where mismatch_id = 'm3'"
        )
        con.execute(
            "insert into raw.erp_stock_move values (61, 'erp.stock_move', 0, 5, ?), "
            "(62, 'erp.stock_move', 1, 99, ?)",
            [T0, T0 + timedelta(hours=1)],  # older than the newest; a tie with a higher offset
        )
        con.execute("insert into marts.returns select * from marts.returns where return_key = 'k1'")
        con.execute("update recon.recon_run set as_of = ?", [at])
    elif step == 3:  # a column added, a table gone, a new one; a document sent
        con.execute("alter table marts.returns add column channel varchar default 'shopify'")
        con.execute("drop table marts.returns_kpis")
        con.execute("create table recon.recon_touched as select 'k2' as key, 'return' as kind")
        con.execute(
            "update writeback.adjustments set status = 'sent', sent_at = ?, updated_at = ?, "
            'erp_document = \'{"model": "account.invoice", "id": 12, "number": "CN-12"}\'',
            [at, at],
        )
        con.execute(
            "insert into raw.amazon_returns values ('a2', 'beef', 1, ?), ('a3', 'beef', 2, ?)",
            [at, at],
        )
    con.close()


def _contents(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "select schema_name, table_name, column_name, data_type from duckdb_columns() "
            "where not internal order by schema_name, table_name, column_index"
        ).fetchall()
        out: dict = {"columns": columns}
        for schema, table in sorted({(c[0], c[1]) for c in columns}):
            query = f'select * from {schema}."{table}" order by all'
            if (schema, table) == ("main", "published"):
                query = "select as_of, tables from main.published"
            out[f"{schema}.{table}"] = con.execute(query).fetchall()
        return out
    finally:
        con.close()


def test_incremental_publish_equals_a_publish_from_scratch(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    _warehouse(warehouse)
    incremental, scratch = tmp_path / "inc" / "analyst.duckdb", tmp_path / "full" / "analyst.duckdb"
    first = publish(warehouse, incremental)
    assert not first.incremental  # nothing published yet: from an empty file
    for step in (1, 2, 3):
        _increment(warehouse, step)
        a = publish(warehouse, incremental)
        b = publish(warehouse, scratch, incremental=False)
        assert a.incremental and not b.incremental
        assert a.tables == b.tables, step
        assert (a.withheld_columns, a.free_text_columns) == (
            b.withheld_columns,
            b.free_text_columns,
        )
        assert _contents(incremental) == _contents(scratch), step
        if step == 1:
            assert a.written["marts.returns"] == (2, 3)  # 2 changed, 1 new
            assert a.written["marts.return_lines"] == (1, 0)
            assert "marts.returns_kpis" not in a.written
        if step == 2:  # the reopened row is its old self; the duplicated row doubled (2 -> 4)
            assert a.written["recon.mismatches"] == (1, 1)
            assert a.written["marts.returns"] == (2, 4)
    fresh = duckdb.connect(str(incremental), read_only=True)
    rows = fresh.execute("select * from meta.freshness order by source").fetchall()
    fresh.close()
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("amazon_returns", 3, "beef:2"),
        ("erp_stock_move", 62, "erp.stock_move:1:99"),  # the tie: the higher offset
        ("wms_receipts", 1, "wms.receipts:0:1"),
    ]
    assert sorted(p.name for p in incremental.parent.iterdir()) == ["analyst.duckdb"]


def _blocks(path: Path) -> dict[str, list]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name <> 'main'"
        ).fetchall()
        return {
            f"{s}.{t}": con.execute(
                f"select block_id, block_offset from pragma_storage_info('{s}.{t}') order by all"
            ).fetchall()
            for s, t in tables
        }
    finally:
        con.close()


def test_an_unchanged_table_is_not_rewritten(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    _warehouse(warehouse)
    target = tmp_path / "analyst.duckdb"
    publish(warehouse, target)
    before = _blocks(target)
    again = publish(warehouse, target)
    assert again.incremental and again.written == {}
    con = duckdb.connect(str(warehouse))
    con.execute("update marts.returns set status = 'credited' where return_key = 'k7'")
    con.close()
    one = publish(warehouse, target)
    assert one.written == {"marts.returns": (1, 1)}  # that row only: deleted and written again
    after = _blocks(target)
    unchanged = {k for k in before if k not in ("marts.returns", "meta.freshness")}
    assert unchanged and {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["marts.returns"] != before["marts.returns"]


# What each incremental model's pre-hook deletes (and its insert writes), as publish scopes it:
# the pre-hook in the dbt manifest -> the condition of pipelines.lib.publish.SCOPED_TABLES
_PRE_HOOKS = {
    "{{ delete_touched_scope(in_touched('return_key', 'return', false)) }}": publish_module._RETURN,
    "{{ delete_touched_scope(in_touched('receipt_id', 'receipt', false)) }}": (
        publish_module._RECEIPT
    ),
    "{{ delete_touched_scope(dispositions_touched_condition()) }}": (
        f"{publish_module._RECEIPT} or {publish_module._INSPECTION}"
    ),
    "{{ delete_touched_scope(credits_touched_condition()) }}": (
        f"{publish_module._RETURN} or (return_key is null and system = 'shopify' and "
        f"{publish_module._REFUND})"
    ),
    "{{ delete_touched_scope(rma_number_touched_condition()) }}": publish_module._RMA,
    "{{ delete_recon_scope() }}": publish_module._RULE,
}
# the first 8 hex digits of the md5 of the macros those conditions are written from (their text,
# whitespace aside): a changed macro must be mirrored in publish's conditions, then here
_MACROS = {
    "in_touched": "a7d6ee19",
    "in_recon_scope": "97b752cb",
    "credits_touched_condition": "fd0cfb60",
    "dispositions_touched_condition": "419968d5",
    "rma_number_touched_condition": "fe82c501",
    "normalize_rma": "78d6e227",
}


def test_the_scoped_tables_are_the_incremental_models_of_the_manifest(dbt_manifest):
    """Every published table a build changes only in its scope is in publish's SCOPED_TABLES
    with the condition of its model's pre-hook, and none other is (a table rebuilt whole, or
    with another scope, compared by scope would miss rows)."""
    manifest = json.loads(Path(dbt_manifest).read_text())
    incremental = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["schema"] not in PUBLISHED_SCHEMAS:
            continue
        if (node["schema"], node["name"]) in UNPUBLISHED_TABLES:
            continue
        config = node["config"]
        if config["materialized"] == "incremental":
            incremental[(node["schema"], node["name"])] = config
    assert set(incremental) == set(SCOPED_TABLES)
    for table, config in incremental.items():
        scoped = SCOPED_TABLES[table]
        (pre,) = [h["sql"] for h in config["pre-hook"]]
        assert scoped.condition == _PRE_HOOKS[pre], table
        post = {h["sql"] for h in config["post-hook"]} - {
            "{{ record_returns_watermark() }}",
            "{{ record_recon_state() }}",
        }
        expected = {
            "marts": set(),
            "as_of": {"{{ refresh_stage_latencies_as_of() }}"},
            "recon": {"{{ refresh_detected_at() }}"},
        }[scoped.needs]
        assert post == expected, table
        assert (pre == "{{ delete_recon_scope() }}") == (scoped.needs == "recon"), table
    digests = {
        name: hashlib.md5(
            " ".join(manifest["macros"][f"macro.returnsync.{name}"]["macro_sql"].split()).encode()
        ).hexdigest()[:8]
        for name in _MACROS
    }
    assert digests == _MACROS
