"""The one CSV writer of the product: spreadsheet-safe (DESIGN §11, "Spreadsheet safety").

A spreadsheet opening a CSV runs any cell that starts with `=`, `+`, `-` or `@` as a formula
(`=HYPERLINK("http://x","y")`, `@SUM(A1)`), and a leading tab or carriage return is the usual
way around a filter of those four. The values come from outside (a B2B credit request's
`request_id` or `sku` lands as typed), so every text cell that begins with one of these six
characters is written with a leading `'`, unless the whole cell is a plain number: `-12.50`,
`+3`, `1e-5` and `-0.5E+3` stay numbers, `-foo`, `-1+1`, `-inf` and `+-1` are escaped.
Only text is ever escaped: a number, date or boolean value is written as it is.

Every CSV the product writes goes through here: `returnsync report --format csv`, the
`reports/*.csv` of the recon report asset (both via `pipelines.lib.recon.report.to_csv` ->
`write_rows`) and `returnsync sql --format csv` (stdout and `--output`, via `write_frame`).
`write_rows` is Python's csv module over formatted rows; `write_frame` escapes a polars frame's
text columns with the same two patterns, vectorised, then lets polars write it (an export of
millions of rows stays fast). A property test checks that both give the same cell for any text.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TextIO

import polars as pl

# the first character of a cell a spreadsheet would run (DESIGN §11)
FORMULA_START = "=+-@\t\r"
# a plain number: optional sign, digits with an optional fraction (or a bare fraction), optional
# exponent; ASCII digits only, the whole cell (Rust's and Python's `\d` both match other scripts)
PLAIN_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_PLAIN_NUMBER = re.compile(PLAIN_NUMBER)
_FORMULA_START_RX = r"^[=+\-@\t\r]"  # the same set, for polars' (Rust) regex
_PLAIN_NUMBER_RX = rf"^{PLAIN_NUMBER}$"  # `$` is the end of the text in Rust's regex

QUOTE = "'"


def needs_escape(text: str) -> bool:
    """True when a spreadsheet would read `text` as a formula: it starts with one of
    `= + - @ tab CR` and is not a plain number."""
    return bool(text) and text[0] in FORMULA_START and _PLAIN_NUMBER.fullmatch(text) is None


def escape(text: str) -> str:
    """`text` with a leading `'` when it would be read as a formula, else unchanged."""
    return QUOTE + text if needs_escape(text) else text


def cell(value: object) -> str:
    """One value as CSV text: empty for None, ISO-8601 for times, exact decimals, `true`/`false`,
    JSON for lists and mappings; text (and only text) escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple | dict):
        return escape(json.dumps(value, default=str, ensure_ascii=False))
    return escape(str(value))


def write_rows(out: TextIO, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a header and rows (sequences of values) as CSV to `out`, lines ending in `\n`.

    Python's csv module quotes a field only for the characters of its own line terminator, so a
    `\n` terminator would leave a bare `\r` unquoted (and a reader splits the row there): rows
    are formatted with `\r\n`, which quotes both, and end in `\n`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def emit(values: list[str]) -> None:
        writer.writerow(values)
        out.write(buffer.getvalue()[:-2] + "\n")
        buffer.seek(0)
        buffer.truncate()

    emit([escape(str(c)) for c in columns])
    for row in rows:
        emit([cell(v) for v in row])


def rows_to_csv(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    write_rows(out, columns, rows)
    return out.getvalue()


def _escaped(name: str) -> pl.Expr:
    column = pl.col(name).cast(pl.String)
    risky = column.str.contains(_FORMULA_START_RX) & ~column.str.contains(_PLAIN_NUMBER_RX)
    return pl.when(risky).then(pl.lit(QUOTE) + column).otherwise(column).alias(name)


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every text cell escaped, nested values as (escaped) JSON text and escaped
    column names; numbers, times and booleans untouched."""
    nested = [
        name
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Object)
    ]
    if nested:
        frame = frame.with_columns(
            pl.col(name).map_elements(
                lambda v: None if v is None else json.dumps(_plain(v), default=str),
                return_dtype=pl.String,
                skip_nulls=False,
            )
            for name in nested
        )
    text = [n for n, dtype in frame.schema.items() if dtype in (pl.String, pl.Categorical, pl.Enum)]
    if text:
        frame = frame.with_columns(_escaped(n) for n in text)
    renamed = {n: escape(n) for n in frame.columns if needs_escape(n)}
    return frame.rename(renamed) if renamed else frame


def _plain(value: object) -> object:
    """A polars nested value (lists of dicts, ...) as JSON-able Python."""
    if isinstance(value, pl.Series):
        return [_plain(v) for v in value.to_list()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def write_frame(frame: pl.DataFrame, target: TextIO | Path) -> None:
    """Write a polars frame as spreadsheet-safe CSV to a text stream or a file."""
    safe = safe_frame(frame)
    if isinstance(target, Path):
        safe.write_csv(target)
    else:
        target.write(safe.write_csv())
