"""Property-based differential test of the column-wise NDJSON drop decoder (files/columnar.py,
issue 23): generated webhooks and Shopify refunds (tests/fuzz/test_fuzz_ndjson_cdc.py's
strategies, written as orjson writes them so that most lines take the SQL path), then mutated
(bytes, encodings, structure, values at their types' limits). Property: the column-wise decoder
lands exactly the rows, `_extra`, payloads and dead letters (same line, same reason) of the
per-line reference, and the same line tally. CI runs the `ci` profile (tests/conftest.py);
`make fuzz` the long one."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from pipelines.lib.files.columnar import land_ndjson_columnar
from pipelines.lib.files.ndjson import LineTally, land_ndjson
from pipelines.lib.warehouse import connect
from tests.fuzz.test_fuzz_ndjson_cdc import EPOCH, SOURCES, mutate_file, refunds, webhooks

# a tenth of the profile's examples: each lands its file twice, once through a DuckDB query
# (ci: 20 a test, ~1 s each at load 10; make fuzz: 2,000)
EXAMPLES = settings(max_examples=max(20, settings.default.max_examples // 10))


def compact(record: dict) -> bytes:
    """The record as orjson writes it (json's compact form beyond 64-bit integers)."""
    try:
        return orjson.dumps(record)
    except TypeError:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def duck():
    con = connect(":memory:")
    yield con
    con.close()


def _land(con, table: str, path: Path, columnar: bool) -> tuple[dict, dict, tuple, int]:
    fs = SOURCES[table]
    tables, letters = [], []

    def bury(batch):
        letters.extend(batch)
        return len(batch)

    tally = LineTally()
    args = (fs, path, "rel", "sha", EPOCH, tables.append, bury, 5)
    if columnar:
        rows, dead, in_sql = land_ndjson_columnar(con, *args, counts=tally)
    else:
        rows, dead = land_ndjson(con, *args, counts=tally)
        in_sql = 0
    landed = {}
    for t in tables:
        for row in t.to_pylist():
            landed[row["_row_number"]] = row
    reasons = {d.position: (d.raw, d.error) for d in letters}
    assert (rows, dead) == (len(landed), len(reasons))
    return landed, reasons, (tally.lines_read, tally.blank_lines, tally.encoding), in_sql


def check(table: str, records: list[dict], data, tmp_path: Path, con) -> None:
    lines = [compact(r) for r in records]
    blob, new_lines, _, touched = mutate_file(lines, data)
    note(f"mutated lines: {[new_lines[i][:300] for i in touched]}")
    path = tmp_path / "drop.ndjson"
    path.write_bytes(blob)
    ref = _land(con, table, path, columnar=False)
    col = _land(con, table, path, columnar=True)
    assert col[0] == ref[0]  # rows, line by line
    assert col[1] == ref[1]  # dead letters: position, raw text, reason
    assert col[2] == ref[2]  # lines read, blank lines, encoding


@EXAMPLES
@given(records=st.lists(webhooks, min_size=1, max_size=4), data=st.data())
def test_fuzz_webhooks_column_wise(records, data, tmp_path_factory, duck):
    check("returns_saas_webhooks", records, data, tmp_path_factory.mktemp("w"), duck)


@EXAMPLES
@given(records=st.lists(refunds, min_size=1, max_size=4), data=st.data())
def test_fuzz_refunds_column_wise(records, data, tmp_path_factory, duck):
    check("shopify_refunds", records, data, tmp_path_factory.mktemp("r"), duck)


@EXAMPLES
@given(records=st.lists(webhooks, min_size=1, max_size=6))
def test_fuzz_unmutated_drops_take_the_sql_path(records, tmp_path_factory, duck):
    """Generated (unmutated) records land alike, and those that are certain in SQL."""
    path = tmp_path_factory.mktemp("u") / "drop.ndjson"
    path.write_bytes(b"".join(compact(r) + b"\n" for r in records))
    ref = _land(duck, "returns_saas_webhooks", path, columnar=False)
    col = _land(duck, "returns_saas_webhooks", path, columnar=True)
    assert col[:3] == ref[:3]
