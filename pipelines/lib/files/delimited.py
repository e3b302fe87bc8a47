"""CSV/TSV readers: the Amazon returns report (DESIGN §2.6), B2B credit requests (§2.7) and the
reference crosswalks (§2.8).

Rows are read as text with Python's csv module (streaming, the row's own text kept for dead
letters), batched into an Arrow table of strings and typed by DuckDB in one statement per batch:
`try_cast` decides, per cell, whether the text is a valid number or time, and a row with a bad or
missing required cell goes to the dead letters with the reason while the good rows of the batch
are inserted in bulk. Empty cells are NULL. Columns the contract does not name are kept in
`_extra` as a JSON object keyed by their header.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.lib.contracts import AMAZON_COLUMNS, FileSource
from pipelines.lib.warehouse import DeadLetter

AMAZON_REPORT_RE = re.compile(r"returns_(\d{4}-\d{2}-\d{2})\.tsv")
_INT_RE = "[+-]?[0-9]+"
_DEC_RE = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)"

csv.field_size_limit(16 * 1024 * 1024)


class ContractViolation(Exception):
    """The file as a whole does not match its contract (header, name): it is quarantined."""


@dataclass(frozen=True)
class Header:
    names: tuple[str, ...]  # the header as the file has it (trimmed)
    columns: tuple[str | None, ...]  # the contract column at each position, None if unknown
    constants: dict[str, str]  # contract columns not in the file but given by it (report_date)

    def label(self, column: str) -> str:
        """How the file names a contract column (Amazon's own header for the report)."""
        for name, col in zip(self.names, self.columns, strict=True):
            if col == column:
                return name
        return column


def dialect(path: Path) -> dict:
    if path.suffix.lower() == ".tsv":
        # Amazon's flat files are tab-separated and unquoted: a quote is an ordinary character
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return {"delimiter": ","}


def header_map(fs: FileSource) -> dict[str, str]:
    """Header name in the file -> contract column."""
    if fs.raw_table == "amazon_returns":
        return {header: col for header, (col, _) in AMAZON_COLUMNS.items()}
    return {name: name for name in fs.columns}


def read_header(fs: FileSource, path: Path) -> Header:
    """Check the file's name and header against the contract; raise ContractViolation if not."""
    constants: dict[str, str] = {}
    if fs.raw_table == "amazon_returns":
        match = AMAZON_REPORT_RE.fullmatch(path.name)
        try:
            report_date = date.fromisoformat(match.group(1)) if match else None
        except ValueError:
            report_date = None
        if report_date is None:
            raise ContractViolation(
                f"file name {path.name!r} is not returns_<YYYY-MM-DD>.tsv with a valid date"
            )
        constants["report_date"] = report_date.isoformat()
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        try:
            first = next(csv.reader(handle, **dialect(path)))
        except StopIteration:
            raise ContractViolation("empty file: no header row") from None
        except csv.Error as exc:
            raise ContractViolation(f"unreadable header row: {exc}") from None
    names = tuple(name.strip() for name in first)
    mapping = header_map(fs)
    labels = {col: header for header, col in mapping.items()}
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ContractViolation(f"duplicate header column(s): {', '.join(map(repr, duplicates))}")
    columns = tuple(mapping.get(name) for name in names)
    missing = [labels.get(col, col) for col in fs.required if col not in columns]
    if missing:
        raise ContractViolation(
            f"header is missing required column(s) {', '.join(map(repr, missing))}; "
            f"found {list(names)!r}"
        )
    return Header(names, columns, constants)


class _Tap:
    """Iterates a file's lines for csv.reader and keeps the lines of the current row."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.lines: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self.handle)
        self.lines.append(line)
        return line

    def take(self) -> str:
        text = "".join(self.lines).rstrip("\r\n")
        self.lines.clear()
        return text


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def typing_sql(fs: FileSource, header: Header) -> str:
    """A query typing the Arrow batch `_rs_batch(_row_number, _raw, __c0..)`, with `_error`."""
    position = {col: i for i, col in enumerate(header.columns) if col is not None}
    values, typed, errors, outputs = [], [], [], []
    for k, (column, kind) in enumerate(fs.columns.items()):
        v, t = f"__v{k}", f"__t{k}"
        label = header.label(column)
        if column in header.constants:
            outputs.append(f"{_q(header.constants[column])}::{kind} as {_ident(column)}")
            continue
        if column not in position:
            outputs.append(f"null::{kind} as {_ident(column)}")
            continue
        c = f"__c{position[column]}"
        if kind == "varchar":
            values.append(f"nullif({c}, '') as {v}")
            typed.append(f"{v} as {t}")
        else:
            values.append(f"nullif(trim({c}), '') as {v}")
            try_cast = f"try_cast({v} as {kind})"
            if kind in ("integer", "bigint"):
                cast = f"case when regexp_full_match({v}, '{_INT_RE}') then {try_cast} end"
                what = "integer"
            elif kind.startswith("decimal"):
                cast = f"case when regexp_full_match({v}, '{_DEC_RE}') then {try_cast} end"
                what = "number"
            elif kind == "timestamptz":
                cast, what = f"try_cast({v} as timestamptz)", "time"
            elif kind == "date":
                cast, what = f"try_cast({v} as date)", "date"
            else:
                cast, what = f"try_cast({v} as {kind})", kind
            typed.append(f"{cast} as {t}")
            errors.append(
                f"case when {v} is not null and {t} is null then "
                f"{_q(f'bad {what} in {label!r}: ')} || '''' || left({v}, 40) || '''' end"
            )
        if column in fs.required:
            missing = _q(f"missing required field {label!r}")
            errors.append(f"case when {v} is null then {missing} end")
        outputs.append(f"{t} as {_ident(column)}")
    extras = [
        (name or f"column_{i + 1}", f"__c{i}")
        for i, (name, col) in enumerate(zip(header.names, header.columns, strict=True))
        if col is None
    ]
    extra = (
        "json_object(" + ", ".join(f"{_q(n)}, nullif({c}, '')" for n, c in extras) + ")"
        if extras
        else "null::json"
    )
    error = f"concat_ws('; ', {', '.join(errors)})" if errors else "''"
    raw_cols = ", ".join(f"__c{i}" for i in range(len(header.names)))
    return (
        f"with s as (select _row_number, _raw, {raw_cols}"
        + "".join(f", {x}" for x in values)
        + " from _rs_batch),\n"
        "t as (select *" + "".join(f", {x}" for x in typed) + " from s)\n"
        f"select _row_number, _raw, {', '.join(outputs)}, {extra} as _extra, {error} as _error "
        "from t"
    )


def land_delimited(
    con,
    fs: FileSource,
    path: Path,
    header: Header,
    rel: str,
    sha256: str,
    ingested_at,
    bury: Callable[[list[DeadLetter]], int],
    batch_rows: int,
    batch_bytes: int = 1 << 62,
) -> tuple[int, int]:
    """Stream the data rows of `path` into raw.<table> in batches of `batch_rows` rows or
    `batch_bytes` bytes of input, whichever comes first; returns (rows landed, dead letters)."""
    width = len(header.names)
    sql = typing_sql(fs, header)
    contract = ", ".join(_ident(c) for c in fs.columns)
    insert = (
        f"insert into raw.{fs.raw_table} by name select ? as _file, ? as _file_sha256, "
        f"_row_number, ?::timestamptz as _ingested_at, _extra, {contract} "
        "from _rs_good"
    )
    schema = pa.schema(
        [("_row_number", pa.int64()), ("_raw", pa.string())]
        + [(f"__c{i}", pa.string()) for i in range(width)]
    )
    batch: list[tuple] = []  # (row number, row text, *fields), turned into columns per batch
    dead: list[DeadLetter] = []
    rows = buried = 0

    # DuckDB reads the Arrow batches through replacement scans of these local names: registering
    # them would add catalog entries that the file's transaction keeps (with their data) until
    # the commit, so memory would grow with the file.
    def flush() -> None:
        nonlocal rows, buried
        if batch:
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(zip(*batch, strict=True), schema, strict=True)
            ]
            batch.clear()
            _rs_batch = pa.Table.from_arrays(arrays, schema=schema)  # read by the SQL
            del arrays
            typed = con.sql(sql).to_arrow_table()
            del _rs_batch
            ok = pc.equal(typed["_error"], "")
            _rs_good = typed.filter(ok)  # read by the SQL
            rows += con.execute(insert, [rel, sha256, ingested_at]).fetchone()[0]
            bad = typed.filter(pc.invert(ok)).select(["_row_number", "_raw", "_error"])
            for number, raw, error in zip(*(c.to_pylist() for c in bad.columns), strict=True):
                dead.append(DeadLetter(fs.source, f"{sha256}:{number}", raw, error))
        if dead:
            buried += bury(dead)
            dead.clear()

    _read(path, fs, sha256, width, batch, dead, flush, batch_rows, batch_bytes)
    flush()
    return rows, buried


def _read(path, fs, sha256, width, batch, dead, flush, batch_rows, batch_bytes) -> None:
    """Append each data row's (number, text, *fields) to `batch` (bad rows to `dead`)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        tap = _Tap(handle)
        reader = csv.reader(tap, **dialect(path))
        try:
            next(reader)  # the header, checked by read_header
        except StopIteration:
            return
        tap.take()
        number = pending = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                number += 1
                raw = tap.take()
                dead.append(DeadLetter(fs.source, f"{sha256}:{number}", raw, f"bad row: {exc}"))
                continue
            raw = tap.take()
            pending += len(raw)
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            number += 1
            if len(fields) != width:
                dead.append(
                    DeadLetter(
                        fs.source,
                        f"{sha256}:{number}",
                        raw,
                        f"row has {len(fields)} fields, the header has {width}",
                    )
                )
            else:
                batch.append((number, raw, *fields))
            if len(batch) >= batch_rows or len(dead) >= batch_rows or pending >= batch_bytes:
                flush()
                pending = 0
