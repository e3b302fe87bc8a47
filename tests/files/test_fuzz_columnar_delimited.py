"""Property: a CSV/TSV file lands the same read column-wise (`land_delimited(columnar=True)`)
as read by the csv module line by line: the same rows, dead letters (position, reason, text) and
line accounting, for the generated files and mutants of tests/fuzz/test_fuzz_delimited.py (bytes
flipped or inserted, quotes, delimiters and carriage returns injected, lines split, joined or
deleted, cells at type limits, files re-encoded with a BOM or as UTF-16)."""

from __future__ import annotations

import itertools

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.lib.files.delimited import land_delimited, read_header
from pipelines.lib.warehouse import ensure_schema
from tests.fuzz.test_fuzz_delimited import (
    ENCODINGS,
    SOURCES,
    TABLES,
    file_name,
    line_mutation,
    valid_file,
)

EXAMPLES = settings(max_examples=max(25, settings.default.max_examples // 8))
_counter = itertools.count()


@pytest.fixture(scope="module")
def duck():
    connection = duckdb.connect()
    connection.execute("set timezone = 'UTC'")
    ensure_schema(connection)
    yield connection
    connection.close()


def land(con, path, table: str, columnar: bool, batch_rows: int, batch_bytes: int) -> tuple:
    fs = SOURCES[table]
    label = f"fuzz-{next(_counter)}"
    dead: list = []

    def bury(letters):
        dead.extend(letters)
        return len(letters)

    header = read_header(fs, path)
    counts = land_delimited(
        con, fs, path, header, path.name, label, None, bury, batch_rows, batch_bytes,
        columnar=columnar,
    )  # fmt: skip
    rows = con.execute(
        f"select * exclude (_file, _file_sha256, _ingested_at) from raw.{table} "
        f"where _file_sha256 = '{label}' order by all"
    ).fetchall()
    con.execute(f"delete from raw.{table} where _file_sha256 = '{label}'")
    letters = sorted((d.position.split(":", 1)[1], d.error, d.raw) for d in dead)
    lines = (counts.lines_read, counts.header, counts.blank, counts.rows, counts.dead_letters)
    return rows, letters, lines, counts.columnar_rows


@pytest.mark.parametrize("table", TABLES)
@EXAMPLES
@given(data=st.data())
def test_column_wise_lands_every_mutant_as_the_reference(duck, tmp_path_factory, table, data):
    lines = data.draw(valid_file(table), label="lines")
    if data.draw(st.booleans(), label="re-encode"):
        encoding = data.draw(st.sampled_from(sorted(ENCODINGS)), label="encoding")
        content = ENCODINGS[encoding](b"\n".join(lines).decode("utf-8") + "\n")
    else:
        for _ in range(data.draw(st.integers(0, 3), label="mutations")):
            if len(lines) < 2:
                break
            lines, _ = data.draw(line_mutation(table, lines), label="mutation")
        end = data.draw(st.sampled_from([b"\n", b"\r\n"]), label="line end")
        content = end.join(lines) + data.draw(st.sampled_from([end, b""]), label="last end")
    batch_rows = data.draw(st.sampled_from([1, 3, 1000]), label="batch rows")
    batch_bytes = data.draw(st.sampled_from([64, 200, 4 << 20]), label="batch bytes")
    path = tmp_path_factory.mktemp("fuzz_columnar_delimited") / file_name(table)
    path.write_bytes(content)

    *reference, by_sql = land(duck, path, table, False, batch_rows, batch_bytes)
    *columnar, in_sql = land(duck, path, table, True, batch_rows, batch_bytes)

    assert columnar == reference
    assert by_sql == 0 and in_sql <= reference[2][3]  # rows split column-wise, at most all
