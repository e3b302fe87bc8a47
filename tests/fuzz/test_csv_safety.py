"""Property tests of the spreadsheet-safe CSV writer (DESIGN §11).

An independent oracle decides what a spreadsheet would run: a cell starting with = + - @ tab or
CR that is not an ASCII decimal number. Both writers (rows through Python's csv module, a
polars frame vectorised) must escape exactly those cells, and any CSV reader must get back the
escaped cells, whatever the text holds (quotes, separators, CR, LF).
"""

from __future__ import annotations

import csv
import io

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pipelines.lib.csvsafe import PLAIN_NUMBER, escape, rows_to_csv, write_frame

RISKY = "=+-@\t\r"
texts = st.one_of(
    st.text(alphabet=st.sampled_from(list(RISKY + "0123456789.eE ,\"'\n;xX٣")), max_size=12),
    st.text(max_size=12),
    st.from_regex(PLAIN_NUMBER, fullmatch=True),
    st.builds(lambda c, t: c + t, st.sampled_from(list(RISKY)), st.text(max_size=8)),
)


def is_plain_number(text: str) -> bool:
    if not text.isascii() or any(c not in "0123456789+-.eE" for c in text):
        return False
    try:
        float(text)  # (an exponent too large for a float is still a number, not a formula)
    except ValueError:
        return False
    return True


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@given(texts)
def test_escape_quotes_exactly_what_a_spreadsheet_would_run(text):
    runs = bool(text) and text[0] in RISKY and not is_plain_number(text)
    assert escape(text) == ("'" + text if runs else text)


@given(st.lists(st.lists(st.one_of(st.none(), texts), min_size=2, max_size=2), max_size=8))
def test_both_writers_round_trip_to_the_escaped_cells(rows):
    expected = [["a", "b"]] + [["" if v is None else escape(v) for v in row] for row in rows]
    assert parse(rows_to_csv(["a", "b"], rows)) == expected
    frame = pl.DataFrame(rows, schema={"a": pl.String, "b": pl.String}, orient="row")
    out = io.StringIO()
    write_frame(frame, out)
    assert parse(out.getvalue()) == expected
