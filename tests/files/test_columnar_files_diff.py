"""File drops landed column-wise (`files/columnar.py`, DuckDB's JSON functions; CSV/TSV lines
split by DuckDB, `delimited._read_columnar`) against the reference per-line readers: identical
raw tables, ledgers (`meta.files_landed`, `meta.file_lines`) and dead letters (same positions,
same errors, hence the same `reason_code`), over the tricky and limit lines of the fast-path
tests, the hostile NDJSON corpus, every shared fixture, and simulated landscapes at several
seeds with faults and delivery noise (issue 23). CSV/TSV cases: test_columnar_delimited_diff."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from pipelines.lib.cdc.reasons import reason_code
from pipelines.lib.contracts import FILE_SOURCES
from pipelines.lib.files import land_files
from pipelines.lib.files.columnar import chunk_sql, supported
from pipelines.lib.warehouse import connect
from tests.files.test_files_fastpath import (
    LIMIT_BYTES,
    LIMIT_LINES,
    SHOPIFY_LINES,
    WEBHOOK_LINES,
    refund_line,
    webhook,
    write_lines,
)
from tests.hostile.test_ndjson_cdc import CDC_CASES

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
FILE_SOURCE_NAMES = ("returns_saas", "shopify", "amazon", "b2b", "reference")
DECODERS = ("reference", "columnar")


def _stored(con) -> dict:
    stored = {
        fs.raw_table: con.execute(
            f"select * exclude (_ingested_at) from raw.{fs.raw_table} order by all"
        ).fetchall()
        for fs in FILE_SOURCES
    }
    stored["dead_letters"] = con.execute(
        "select source, position, raw, error from meta.dead_letters order by all"
    ).fetchall()
    stored["files_landed"] = con.execute(
        "select sha256, source, path, rows_landed, dead_letters from meta.files_landed order by all"
    ).fetchall()
    stored["file_lines"] = con.execute("select * from meta.file_lines order by all").fetchall()
    stored["quarantine"] = con.execute(
        "select sha256, source, path, quarantined_path, reason from meta.quarantine order by all"
    ).fetchall()
    return stored


def land_both(
    tmp_path: Path, landing: Path, batch_rows: int = 7, batch_bytes: int = 4 << 20
) -> tuple[dict, dict, int]:
    """Land copies of `landing` with each decoder (and once more: nothing changes); returns
    what each stored and how many rows the column-wise decoder converted in SQL (per raw
    table in the column-wise one's `columnar_rows`)."""
    out, in_sql = [], 0
    for decoder in DECODERS:
        copy = tmp_path / f"landing-{decoder}"
        shutil.copytree(landing, copy)
        con = connect(tmp_path / f"warehouse-{decoder}.duckdb")
        try:
            summaries = land_files(
                con, copy, batch_rows=batch_rows, batch_bytes=batch_bytes, decoder=decoder
            )
            again = land_files(con, copy, decoder=decoder)
            assert sum(s.rows + s.dead_letters for s in again.values()) == 0
            stored = _stored(con)
            stored["summaries"] = {
                t: (s.files_landed, s.rows, s.dead_letters, s.lines_read, s.lines_ignored)
                for t, s in summaries.items()
            }
            if decoder == "columnar":
                in_sql = sum(s.columnar_rows for s in summaries.values())
                stored["columnar_rows"] = {t: s.columnar_rows for t, s in summaries.items()}
            else:
                assert sum(s.columnar_rows for s in summaries.values()) == 0
        finally:
            con.close()
        out.append(stored)
    ref, col = out
    for name in ref:
        assert col[name] == ref[name], f"{name} differs"
    return ref, col, in_sql


def test_both_ndjson_sources_convert_column_wise():
    assert [fs.raw_table for fs in FILE_SOURCES if supported(fs)] == [
        "returns_saas_webhooks",
        "shopify_refunds",
    ]
    assert "json_transform" in chunk_sql("shopify_refunds")


def test_tricky_and_limit_lines_land_alike(tmp_path):
    landing = tmp_path / "landing"
    write_lines(landing / "returns_saas" / "webhooks.ndjson", WEBHOOK_LINES)
    write_lines(landing / "shopify" / "refunds.ndjson", SHOPIFY_LINES)
    limits = landing / "returns_saas" / "limits.ndjson"
    limits.write_bytes(
        b"".join(line.encode() + b"\n" for line in LIMIT_LINES) + b"\n".join(LIMIT_BYTES)
    )
    utf16 = landing / "returns_saas" / "limits-utf16.ndjson"
    utf16.write_bytes(("\n".join([*LIMIT_LINES[:3], webhook(55)]) + "\n").encode("utf-16"))
    ref, _, _ = land_both(tmp_path, landing)  # as written: SQL takes few (escapes, spaces)
    assert len(ref["dead_letters"]) == 24 + 11


# Lines SQL must take or hand back exactly: compact (orjson) forms of the tricky lines, values
# at the edges of what the SQL accepts, and unknown fields at every level.
def _compact(line: str) -> str:
    try:
        return orjson.dumps(orjson.loads(line)).decode()
    except (orjson.JSONDecodeError, TypeError):  # not JSON, or too deep for orjson
        return line


EDGE_WEBHOOKS = [
    webhook(60, total='"-0.00"', price='"+5"'),
    webhook(61, total='"0.12345"', price='"00012.5"'),  # beyond the scale: the reference rounds
    webhook(62, total='"99999999999999.9999"', price='"100000000000000"'),
    webhook(63, total="99999999999999", price="-3"),
    webhook(64, total='"5."', price='".5"'),
    webhook(65, updated='"2024-02-30T10:00:00Z"'),
    webhook(66, updated='"2024-02-29 23:59:59.5-05:30"'),
    webhook(67, updated='"2024-02-29T23:59:59.1234567Z"'),
    webhook(68, updated='"0001-06-01T00:00:00Z"'),
    webhook(69, updated='"2024-05-01T10:00:00+24:00"'),
    webhook(70, updated='"2024-05-01t10:00:00z"'),
    webhook(71, rid="-9223372036854775808", qty="-2147483648"),
    webhook(72, rid="9223372036854775807", qty="2147483647"),
    webhook(73, qty="2147483648"),
    webhook(74, tail=',"transactions[0]":1'),
    webhook(75, tail=',"a.b":{"c":[1,{"d":null}]},"z":"\\\\ \\" \\n \\t /"'),
    webhook(76, customer='{"note":"\\u001f control"}'),
    webhook(77, customer='{"score":1e5}'),
    webhook(78, customer='{"score":-0.0}'),
    webhook(79, customer='{"x":"a","x":"b"}'),
    webhook(80, customer='{"x":18446744073709551616}'),
    webhook(81, customer="{}", tail=',"payload2":{}'),
    '{"webhook_id":"w-82","topic":"return.created","delivered_at":"2024-05-01T10:00:00Z",'
    '"payload":{}}',
    webhook(83, rid='"104233"'),
    webhook(84).replace('"rma":"LR-1"', '"rma":"Caf\u00e9 \u2603 \U0001f600"'),
]
EDGE_REFUNDS = [
    refund_line(90, extra_top={"a": [1, 2]}),
    refund_line(91, refund_line_items=[{"id": 1, "line_item": None, "x": 1}]),
    refund_line(92, refund_line_items=[{"id": 1, "line_item": {"id": 2, "sku": "S"}}, None]),
    refund_line(93, refund_line_items=[], transactions=None),
    refund_line(94, refund_line_items=[{"id": 1, "line_item": "S"}]),
    refund_line(95, transactions=[{"id": 1, "amount": "1.5", "currency": None, "k": {}}]),
    refund_line(96, processed_at=None, note=None),
    refund_line(97, id=None),
]


def test_edge_values_land_alike(tmp_path):
    landing = tmp_path / "landing"
    hooks = [*EDGE_WEBHOOKS, *WEBHOOK_LINES, *LIMIT_LINES]
    write_lines(landing / "returns_saas" / "edges.ndjson", [_compact(x) for x in hooks])
    refunds = [*EDGE_REFUNDS, *SHOPIFY_LINES]
    write_lines(landing / "shopify" / "edges.ndjson", [_compact(x) for x in refunds])
    ref, _, in_sql = land_both(tmp_path, landing)
    assert len(ref["returns_saas_webhooks"]) > 30 and len(ref["shopify_refunds"]) > 10
    assert in_sql > 20


def test_hostile_corpus_lands_alike(tmp_path):
    """The hostile NDJSON lines (tests/hostile/test_ndjson_cdc.py) dropped as both sources."""
    landing = tmp_path / "landing"
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x, _ in CDC_CASES)
    for rel in ("returns_saas/hostile.ndjson", "shopify/hostile.ndjson"):
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_bytes(rel.encode() + b"\n" + data)  # two contents, two files
    ref, _, _ = land_both(tmp_path, landing, batch_rows=3)
    assert len(ref["dead_letters"]) > 20
    codes = {reason_code(error) for *_, error in ref["dead_letters"]}
    assert "bad_json" in codes and "missing_field" in codes


def _fixture_objects() -> list[dict]:
    objects = []
    for path in sorted(FIXTURES.rglob("*.json")):
        doc = json.loads(path.read_text())
        objects.append(doc)
        for value in doc.values() if isinstance(doc, dict) else doc:
            if isinstance(value, dict):
                objects.append(value)
            elif isinstance(value, list):
                objects += [v for v in value if isinstance(v, dict)]
    return objects


def test_every_shared_fixture_lands_alike(tmp_path):
    objects = _fixture_objects()
    assert len(objects) > 20
    lines = [orjson.dumps(o).decode() for o in objects] + [json.dumps(o) for o in objects]
    landing = tmp_path / "landing"
    # (a different first line each: the same bytes twice would land once, by the ledger)
    write_lines(landing / "returns_saas" / "fixtures.ndjson", ['{"webhook_id":1}', *lines])
    write_lines(landing / "shopify" / "fixtures.ndjson", ['{"id":1}', *lines])
    ref, _, in_sql = land_both(tmp_path, landing)
    assert ref["shopify_refunds"]  # the fixture refund lands (from its compact line in SQL)
    assert in_sql > 0


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_simulated_landscapes_land_alike(tmp_path, seed):
    from dataclasses import replace

    from returnsync_sim import SimOptions, simulate

    sim = tmp_path / "sim"
    options = replace(SimOptions(), fault_rate=0.3, noise=True)
    simulate(60, seed, sim, datetime(2026, 12, 1, tzinfo=UTC), options, progress=False)
    landing = tmp_path / "landing"
    for name in FILE_SOURCE_NAMES:
        if (sim / name).exists():
            shutil.copytree(sim / name, landing / name)
    ref, col, in_sql = land_both(tmp_path, landing, batch_rows=50)
    ndjson_rows = len(ref["returns_saas_webhooks"]) + len(ref["shopify_refunds"])
    assert ref["dead_letters"]
    # the column-wise path converted the bulk itself, the CSV/TSV drops' rows too
    assert in_sql >= 0.9 * ndjson_rows, (in_sql, ndjson_rows)
    for table in ("amazon_returns", "b2b_credit_requests"):
        assert col["columnar_rows"][table] >= 0.9 * len(ref[table]) > 0, table


def test_the_decoder_comes_from_the_environment(tmp_path, monkeypatch):
    from pipelines.errors import ConfigError

    landing = tmp_path / "landing"
    write_lines(landing / "shopify" / "r.ndjson", [_compact(refund_line(1))])
    con = connect(tmp_path / "w.duckdb")
    try:
        monkeypatch.setenv("RETURNSYNC_FILES_DECODER", "fast")
        with pytest.raises(ConfigError, match="RETURNSYNC_FILES_DECODER must be one of"):
            land_files(con, landing)
        monkeypatch.setenv("RETURNSYNC_FILES_DECODER", "columnar")
        summary = land_files(con, landing)["shopify_refunds"]
        assert (summary.rows, summary.columnar_rows) == (1, 1)
    finally:
        con.close()
