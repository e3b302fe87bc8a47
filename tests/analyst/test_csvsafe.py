"""The spreadsheet-safe CSV writer (DESIGN §11): each edge case with its exact cell."""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from pipelines.lib.csvsafe import cell, escape, rows_to_csv, write_frame

ESCAPED = [
    "=1+1",
    '=HYPERLINK("http://x","y")',
    "@SUM(A1)",
    "+1+1",
    "-foo",
    "-",
    "+",
    "=",
    "@",
    "-inf",
    "-nan",
    "+-1",
    "--1",
    "-1-1",
    "-1+1",
    "-1e",
    "-1e+",
    "-.",
    "- 1",
    "-1 ",
    "-1\n",
    "-1,5",
    "-1_000",
    "-0x1F",
    "-١٢",  # digits of another script are not a plain number
    "\tx",
    "\t",
    "\r=1+1",
    "\rx",
    "=cmd|' /C calc'!A0",
]
UNCHANGED = [
    "",
    "-12.50",
    "-3",
    "+3",
    "1e-5",
    "-0.5E+3",
    ".5",
    "-.5",
    "5.",
    "-5.e3",
    "x=1",
    " =1",  # only the first character counts (DESIGN §11's list)
    "'=1",
    "LR-100021",
    "P10069",
    "\n=1",
    "﹦1",  # a look-alike, not the character
]


@pytest.mark.parametrize("text", ESCAPED)
def test_a_cell_a_spreadsheet_would_run_gets_a_quote(text):
    assert escape(text) == "'" + text


@pytest.mark.parametrize("text", UNCHANGED)
def test_numbers_and_other_text_stay(text):
    assert escape(text) == text


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (None, ""),
        (Decimal("-12.50"), "-12.50"),
        (Decimal("-1E+2"), "-100"),
        (-3, "-3"),
        (-0.5, "-0.5"),
        (True, "true"),
        (datetime(2026, 11, 1, tzinfo=UTC), "2026-11-01T00:00:00+00:00"),
        (date(2026, 11, 1), "2026-11-01"),
        ("-foo", "'-foo"),
        (["=x", "y"], '["=x", "y"]'),  # JSON text starts with `[`: nothing to escape
    ],
)
def test_only_text_is_escaped(value, written):
    assert cell(value) == written


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_rows_round_trip_through_a_csv_reader():
    rows = [[text, Decimal("-1.50"), None] for text in ESCAPED + UNCHANGED]
    parsed = parse(rows_to_csv(["=header", "amount", "empty"], rows))
    assert parsed[0] == ["'=header", "amount", "empty"]
    assert parsed[1:] == [[escape(t), "-1.50", ""] for t in ESCAPED + UNCHANGED]


def test_a_frame_is_written_with_the_same_cells():
    frame = pl.DataFrame(
        {
            "text": ESCAPED + UNCHANGED,
            "amount": [Decimal("-12.50")] * len(ESCAPED + UNCHANGED),
            "n": [-1] * len(ESCAPED + UNCHANGED),
            "tags": [["@a", "b"]] * len(ESCAPED + UNCHANGED),
        },
        schema_overrides={"amount": pl.Decimal(18, 2)},
    )
    out = io.StringIO()
    write_frame(frame, out)
    parsed = parse(out.getvalue())
    assert parsed[0] == ["text", "amount", "n", "tags"]
    assert [row[0] for row in parsed[1:]] == [escape(t) for t in ESCAPED + UNCHANGED]
    assert {tuple(row[1:]) for row in parsed[1:]} == {("-12.50", "-1", '["@a", "b"]')}


def test_a_frame_to_a_file(tmp_path):
    target = tmp_path / "out.csv"
    write_frame(pl.DataFrame({"sku": ["@SUM(A1)"], "qty": [-2]}), target)
    assert target.read_text() == "sku,qty\n'@SUM(A1),-2\n"
