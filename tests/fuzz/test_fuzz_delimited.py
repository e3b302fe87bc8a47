"""Property-based tests of the CSV/TSV readers (DESIGN §12): the Amazon report, B2B credit
requests and both crosswalks.

Each example generates a valid file of the source's contract (typed cells, values at type limits,
empty cells, text with quotes, commas and any Unicode), lands it, then mutates it and lands the
mutant: bytes flipped or inserted, quotes and delimiters injected, lines split or joined, cells
replaced by limit values, or the whole file re-encoded (UTF-8 BOM, UTF-16 LE/BE with a BOM).

Properties, for every mutant:
- the reader never raises;
- every line is accounted for: lines read = header + blank lines + rows landed + dead letters,
  and lines read is the number of physical lines of the file;
- every line the mutation did not touch has exactly the outcome it had unmutated (the same typed
  row, or the same dead letter with the same reason and text); a re-encoded file has the same
  outcome on every line.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.lib.contracts import AMAZON_COLUMNS, FILE_SOURCES
from pipelines.lib.files.delimited import land_delimited, read_header
from pipelines.lib.warehouse import ensure_schema

SOURCES = {fs.raw_table: fs for fs in FILE_SOURCES if fs.source in ("amazon", "b2b", "reference")}


def file_name(table: str) -> str:
    """A name the source's registry pattern matches, with a date where the pattern has a `*` (the
    Amazon report's date comes from its name: `amazon/returns_*.tsv` -> returns_2024-05-02.tsv)."""
    return SOURCES[table].pattern.rsplit("/", 1)[-1].replace("*", "2024-05-02")


LIMIT_VALUES = [
    "", " ", "0001-01-01", "9999-12-31", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
    "infinity", "2147483647", "2147483648", "-9223372036854775809", "99999999999999999999.9999",
    "1e400", "-0", "NaN", "١٢٣",
]  # fmt: skip
ZONES = [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))]

_counter = itertools.count()


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    connection.execute("set timezone = 'UTC'")
    ensure_schema(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_delimited")


# -- generated valid files ---------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\t\x00"), max_size=10)


def cell(kind: str) -> st.SearchStrategy[str]:
    if kind in ("integer", "bigint"):
        typed = st.integers(-(2**31), 2**31 - 1).map(str)
    elif kind.startswith("decimal"):
        typed = st.decimals(
            min_value=-(10**6), max_value=10**6, places=3, allow_nan=False, allow_infinity=False
        ).map(str)
    elif kind == "timestamptz":
        typed = st.builds(
            lambda d, z: d.replace(tzinfo=z).isoformat(),
            st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
            st.sampled_from(ZONES),
        )
    elif kind == "date":
        typed = st.dates().map(str)
    else:
        typed = TEXT
    return st.one_of(typed, typed, typed, st.sampled_from(LIMIT_VALUES), TEXT)


def header_of(table: str) -> list[str]:
    if table == "amazon_returns":
        return list(AMAZON_COLUMNS)
    return list(SOURCES[table].columns)


def kinds_of(table: str) -> list[str]:
    if table == "amazon_returns":
        return [kind for _, kind in AMAZON_COLUMNS.values()]
    return list(SOURCES[table].columns.values())


def format_line(table: str, cells: list[str]) -> str:
    if table == "amazon_returns":
        return "\t".join(cells)  # Amazon's flat file: unquoted
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()[:-1]


@st.composite
def valid_file(draw, table: str) -> list[bytes]:
    """The file's lines as UTF-8 bytes, header first, without terminators."""
    kinds = kinds_of(table)
    rows = draw(st.lists(st.tuples(*(cell(k) for k in kinds)), min_size=1, max_size=5))
    lines = [format_line(table, header_of(table))]
    lines += [format_line(table, list(row)) for row in rows]
    return [line.encode("utf-8") for line in lines]


# -- mutations ---------------------------------------------------------------------------------


@st.composite
def line_mutation(draw, table: str, lines: list[bytes]) -> tuple[list[bytes], set[int]]:
    """One mutation of the data lines: the new lines and the original indexes it touched."""
    i = draw(st.integers(1, len(lines) - 1))
    line = lines[i]
    kind = draw(
        st.sampled_from(["flip", "insert", "inject", "split", "join", "limit", "cr", "delete"])
    )
    if kind == "join" and i + 1 < len(lines):
        return [*lines[:i], line + lines[i + 1], *lines[i + 2 :]], {i, i + 1}
    if kind == "delete":
        return lines[:i] + lines[i + 1 :], {i}
    at = draw(st.integers(0, len(line)))
    if kind == "flip" and line:
        at = min(at, len(line) - 1)
        new = line[:at] + bytes([line[at] ^ draw(st.integers(1, 255))]) + line[at + 1 :]
    elif kind == "insert":
        new = line[:at] + draw(st.binary(min_size=1, max_size=3)) + line[at:]
    elif kind == "inject":
        new = (
            line[:at] + draw(st.sampled_from([b'"', b",", b"\t", b'""', b'",', b"\r"])) + line[at:]
        )
    elif kind == "split":
        new = line[:at] + b"\n" + line[at:]
    elif kind == "limit":
        sep = "\t" if table == "amazon_returns" else ","
        cells = line.decode("utf-8", "surrogateescape").split(sep)  # may be mutated already
        cells[draw(st.integers(0, len(cells) - 1))] = draw(st.sampled_from(LIMIT_VALUES))
        new = sep.join(cells).encode("utf-8", "surrogateescape")
    else:  # "cr", or a flip of an empty line
        new = line + b"\r"
    return lines[:i] + new.split(b"\n") + lines[i + 1 :], {i}


ENCODINGS = {
    "utf-8-bom": lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
    "utf-16-le": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf-16-be": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
}


# -- landing and outcomes ----------------------------------------------------------------------


def land(con, workdir: Path, table: str, data: bytes) -> tuple[dict[int, tuple], object]:
    """Land `data` as a file of `table`; returns {line number after the header: outcome}."""
    fs = SOURCES[table]
    path = workdir / file_name(table)
    path.write_bytes(data)
    label = f"fuzz-{next(_counter)}"
    header = read_header(fs, path)
    dead: list = []

    def bury(letters):
        dead.extend(letters)
        return len(letters)

    counts = land_delimited(con, fs, path, header, path.name, label, None, bury, 1000)
    outcomes: dict[int, tuple] = {}
    rel = con.sql(
        f"select * exclude (_file, _file_sha256, _ingested_at) from raw.{table} "
        f"where _file_sha256 = '{label}'"
    )
    names = rel.columns
    for row in rel.fetchall():
        values = dict(zip(names, row, strict=True))
        number = values.pop("_row_number")
        outcomes[number] = ("row", tuple(sorted(values.items())))
    con.execute(f"delete from raw.{table} where _file_sha256 = '{label}'")
    for letter in dead:
        number = int(letter.position.rsplit(":", 1)[1])
        assert number not in outcomes
        outcomes[number] = ("dead", letter.error, letter.raw)
    return outcomes, counts


def check_accounting(counts, outcomes: dict, physical_lines: int) -> None:
    assert counts.lines_read == physical_lines
    assert counts.header == 1
    assert counts.lines_read == counts.header + counts.blank + counts.rows + counts.dead_letters
    assert counts.rows + counts.dead_letters == len(outcomes)


TABLES = sorted(SOURCES)


@pytest.mark.parametrize("table", TABLES)
@given(data=st.data())
def test_mutated_files_never_raise_and_untouched_lines_land_as_before(con, workdir, table, data):
    lines = data.draw(valid_file(table), label="lines")
    before, counts = land(con, workdir, table, b"\n".join(lines) + b"\n")
    check_accounting(counts, before, len(lines))
    assert set(before) | set(range(1, len(lines))) == set(range(1, len(lines)))

    if data.draw(st.booleans(), label="re-encode"):
        encoding = data.draw(st.sampled_from(sorted(ENCODINGS)), label="encoding")
        text = b"\n".join(lines).decode("utf-8") + "\n"
        after, counts = land(con, workdir, table, ENCODINGS[encoding](text))
        check_accounting(counts, after, len(lines))
        assert after == before
        return

    mutated, touched = lines, set()
    origin = list(range(len(lines)))  # for each current line: its original index, or None
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if len(mutated) < 2:
            break
        new, hit = data.draw(line_mutation(table, mutated), label="mutation")
        i = min(hit)
        added = len(new) - len(mutated) + len(hit)  # lines that replaced the touched ones
        touched |= {origin[j] for j in hit if origin[j] is not None}
        origin = origin[:i] + [None] * added + origin[i + len(hit) :]
        mutated = new
    after, counts = land(con, workdir, table, b"\n".join(mutated) + b"\n")

    check_accounting(counts, after, len(mutated))
    for number, original in enumerate(origin):
        if number == 0 or original is None or original in touched:
            continue
        assert after.get(number) == before.get(original), (number, original)
