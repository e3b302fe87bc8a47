"""CSV/TSV readers: the Amazon returns report (DESIGN §2.6), B2B credit requests (§2.7) and the
reference crosswalks (§2.8).

One record per physical line (DESIGN §12), as the producers write these files: the file is read
as bytes and split at `\n` (a `\r` before it is dropped); each line is decoded on its own and
parsed with Python's csv module. A line that is not valid UTF-8 is the dead letter
`invalid_encoding: ...` (its text with replacement characters in `raw`, each bad byte and its
offset in the line in the error); a quote still open at the end of a line dead-letters that line
only, the next lines are read on their own. A UTF-8 BOM is skipped; a file starting with a UTF-16
BOM (LE or BE) is decoded as UTF-16, line by line in the same way. Blank lines are skipped.

Every line is accounted for (`LineCounts`): lines read = header + blank lines + rows landed +
dead letters. `_row_number` is the line's number after the header (the header is line 0), so a
dead letter's position points at the physical line.

Column-wise (`columnar=True`, the default decoder: RETURNSYNC_FILES_DECODER, files/landing.py),
the csv module reads only the lines whose fields are not certain: a line with no quote (in a
CSV), no carriage return but the one before its line end, no NUL, valid UTF-8 and exactly the
header's number of delimiters is its text split at the delimiter, which DuckDB does for a whole
batch of such lines at once (`_read_columnar`); both ways land the same rows and dead letters
(tests/files/test_columnar_delimited_diff.py).

Rows are batched into an Arrow table of strings and typed by DuckDB in one statement per batch:
`try_cast` decides, per cell, whether the text is a valid number or time, and a row with a bad or
missing required cell goes to the dead letters with the reason while the good rows of the batch
are inserted in bulk. Empty cells are NULL. Columns the contract does not name are kept in
`_extra` as a JSON object keyed by their header.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.lib.contracts import AMAZON_COLUMNS, FileSource
from pipelines.lib.warehouse import DeadLetter

AMAZON_REPORT_RE = re.compile(r"returns_(\d{4}-\d{2}-\d{2})\.tsv")
_INT_RE = "[+-]?[0-9]+"
_DEC_RE = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)"
_TIME_RANGE = (
    "'0001-01-01 00:00:00+00'::timestamptz",
    "'9999-12-31 23:59:59.999999+00'::timestamptz",
)
_DATE_RANGE = ("'0001-01-01'::date", "'9999-12-31'::date")

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


def header_key(name: str) -> str:
    """How header names are compared: case- and space-insensitively (`Return Reason`, as Amazon's
    documentation spells it, is the contract's `Return reason`)."""
    return " ".join(name.split()).casefold()


def header_map(fs: FileSource) -> dict[str, str]:
    """Header name (as `header_key` gives it) -> contract column."""
    if fs.raw_table == "amazon_returns":
        return {header_key(header): col for header, (col, _) in AMAZON_COLUMNS.items()}
    return {header_key(name): name for name in fs.columns}


# -- bytes to lines ------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SHOWN_BAD_BYTES = 8  # an invalid_encoding error lists at most this many bad sequences


def _encoding_error(line: bytes, codec: str) -> str:
    """`invalid_encoding: ...` naming each undecodable byte sequence and its offset in the line
    (the first `_SHOWN_BAD_BYTES` of them: a binary line is not decoded over and over)."""
    bad: list[str] = []
    pos = 0
    more = False
    while pos < len(line):
        try:
            line[pos:].decode(codec)
            break
        except UnicodeDecodeError as exc:
            if len(bad) == _SHOWN_BAD_BYTES:
                more = True
                break
            bad.append(f"0x{line[pos + exc.start : pos + exc.end].hex()} at byte {pos + exc.start}")
            pos += max(exc.end, 1)
    name = {"utf-8": "UTF-8", "utf-16-le": "UTF-16LE", "utf-16-be": "UTF-16BE"}[codec]
    suffix = " and more" if more else ""
    return f"invalid_encoding: the line is not valid {name}: {', '.join(bad)}{suffix}"


def _utf16_chunks(handle, newline: bytes) -> Iterator[bytes]:
    """Split a UTF-16 byte stream at the code unit `newline` (only at even offsets)."""
    buffer = b""
    while chunk := handle.read(1 << 20):
        buffer += chunk
        start = search = 0
        while (i := buffer.find(newline, search)) >= 0:
            if (i - start) % 2:  # the two bytes straddle two code units: not a newline
                search = i + 1
                continue
            yield buffer[start:i]
            start = search = i + 2
        buffer = buffer[start:]
    if buffer:
        yield buffer


def physical_lines(handle) -> Iterator[tuple[str, str | None]]:
    """(text, None) for each line of a binary file, or (text with replacement characters, the
    `invalid_encoding` error) for a line that does not decode. The line terminator is dropped."""
    head = handle.read(2)
    head += handle.read(1) if head == codecs.BOM_UTF8[:2] else b""
    codec, bom = "utf-8", b""
    for mark, name in _BOMS:
        if head.startswith(mark):
            codec, bom = name, mark
            break
    handle.seek(len(bom))
    if codec == "utf-8":
        for line in handle:
            if line[-1:] == b"\n":
                line = line[:-1]
            if line[-1:] == b"\r":
                line = line[:-1]
            try:
                yield line.decode("utf-8"), None
            except UnicodeDecodeError:
                yield line.decode("utf-8", "replace"), _encoding_error(line, "utf-8")
        return
    for line in _utf16_chunks(handle, "\n".encode(codec)):
        try:
            text, error = line.decode(codec), None
        except UnicodeDecodeError:
            text, error = line.decode(codec, "replace"), _encoding_error(line, codec)
        yield (text[:-1] if text[-1:] == "\r" else text), error


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
    with open(path, "rb") as handle:
        first = next(physical_lines(handle), None)
    if first is None:
        raise ContractViolation("empty file: no header row")
    text, error = first
    if error is not None:
        raise ContractViolation(f"header row: {error}")
    try:
        fields = next(csv.reader([text], **dialect(path)), [])
    except csv.Error as exc:
        raise ContractViolation(f"unreadable header row: {exc}") from None
    names = tuple(name.strip() for name in fields)
    if not any(names):
        raise ContractViolation("empty file: no header row")
    mapping = header_map(fs)
    keys = [header_key(n) for n in names]
    duplicates = sorted({n for n, k in zip(names, keys, strict=True) if keys.count(k) > 1})
    if duplicates:
        raise ContractViolation(f"duplicate header column(s): {', '.join(map(repr, duplicates))}")
    columns = tuple(mapping.get(key) for key in keys)
    missing = [_contract_label(fs, col) for col in fs.required if col not in columns]
    if missing:
        raise ContractViolation(
            f"header is missing required column(s) {', '.join(map(repr, missing))}; "
            f"found {list(names)!r}"
        )
    return Header(names, columns, constants)


def _contract_label(fs: FileSource, column: str) -> str:
    """The contract's own header name for a column (Amazon's spelling for the report)."""
    if fs.raw_table == "amazon_returns":
        return next(h for h, (col, _) in AMAZON_COLUMNS.items() if col == column)
    return column


@dataclass
class LineCounts:
    """Where every physical line of a file went: `lines_read` = `header` + `blank` + `rows` +
    `dead_letters` (a dead letter counted once per line, however many reasons it has)."""

    lines_read: int = 0
    header: int = 0
    blank: int = 0
    rows: int = 0
    dead_letters: int = 0
    columnar_rows: int = 0  # rows split column-wise (`columnar=True`), not by the csv module

    @property
    def ignored(self) -> int:
        """Lines that hold no record: the header and blank lines."""
        return self.header + self.blank


class _Feed:
    """The csv reader's input: one line at a time. A reader that asks for a second line is in
    the middle of a quoted field at the end of the first (`starved`): that line is refused."""

    __slots__ = ("line", "starved")

    def __init__(self) -> None:
        self.line: str | None = None
        self.starved = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.line
        if line is None:
            self.starved = True
            raise StopIteration
        self.line = None
        return line


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def typing_sql(
    fs: FileSource, header: Header, source: str = "_rs_batch", keep: tuple[str, ...] = ()
) -> str:
    """A query typing the Arrow batch `_rs_batch(_row_number, _raw, __c0..)`, with `_error`
    (`source`: another relation with those columns, e.g. `split_source`'s; `keep`: more of its
    columns passed through)."""
    position = {col: i for i, col in enumerate(header.columns) if col is not None}
    values, typed, errors, outputs = [], [], [], []
    ranges: list[tuple[str, str, str, tuple[str, str]]] = []
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
                ranges.append((v, t, "time", _TIME_RANGE))
            elif kind == "date":
                cast, what = f"try_cast({v} as date)", "date"
                ranges.append((v, t, "date", _DATE_RANGE))
            else:
                cast, what = f"try_cast({v} as {kind})", kind
            typed.append(f"{cast} as {t}")
            errors.append(
                f"case when {v} is not null and {t} is null then "
                f"{_q(f'bad {what} in {label!r}: ')} || '''' || left({v}, 40) || '''' end"
            )
            for rv, rt, rwhat, (low, high) in ranges:
                # DuckDB reads years 0 and 10000+ (and 'infinity'), which no other reader of
                # the warehouse (Python, Arrow consumers) can hold: outside 0001-9999 UTC it is
                # a dead letter, as in the NDJSON readers
                errors.append(
                    f"case when {rt} is not null and not ({rt} between {low} and {high}) then "
                    f"{_q(f'{rwhat} out of range in {label!r}: ')} || '''' || left({rv}, 40) "
                    "|| '''' end"
                )
            ranges.clear()
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
    kept = "".join(f", {k}" for k in keep)
    return (
        f"with s as (select _row_number, _raw{kept}, {raw_cols}"
        + "".join(f", {x}" for x in values)
        + f" from {source}),\n"
        "t as (select *" + "".join(f", {x}" for x in typed) + " from s)\n"
        f"select _row_number, _raw{kept}, {', '.join(outputs)}, {extra} as _extra, "
        f"{error} as _error from t"
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
    *,
    columnar: bool = False,
) -> LineCounts:
    """Stream the data rows of `path` into raw.<table> in batches of `batch_rows` rows or
    `batch_bytes` bytes of input, whichever comes first; returns where each line went.

    `columnar=True` splits the lines whose fields are certain column-wise (`_read_columnar`);
    the csv module reads the others, as it reads every line otherwise. Either way each batch is
    typed by the same SQL, so both land the same rows and dead letters."""
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
    counts = LineCounts()

    # DuckDB reads the Arrow batches through replacement scans of these local names: registering
    # them would add catalog entries that the file's transaction keeps (with their data) until
    # the commit, so memory would grow with the file.
    def type_rows(_rs_batch: pa.Table) -> int:  # `_rs_batch` is read by the SQL
        """Type one batch; insert its good rows, keep its bad ones in `dead`; rows inserted."""
        typed = con.sql(sql).to_arrow_table()
        del _rs_batch
        return insert_typed(typed)

    def insert_typed(typed: pa.Table) -> int:
        """Insert the typed rows without an error; the others to `dead`; rows inserted."""
        ok = pc.equal(typed["_error"], "")
        _rs_good = typed.filter(ok)  # read by the SQL
        landed = con.execute(insert, [rel, sha256, ingested_at]).fetchone()[0]
        counts.rows += landed
        bad = typed.filter(pc.invert(ok)).select(["_row_number", "_raw", "_error"])
        for number, raw, error in zip(*(c.to_pylist() for c in bad.columns), strict=True):
            dead.append(DeadLetter(fs.source, f"{sha256}:{number}", raw, error))
        return landed

    def flush() -> None:
        if batch:
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(zip(*batch, strict=True), schema, strict=True)
            ]
            batch.clear()
            table = pa.Table.from_arrays(arrays, schema=schema)
            del arrays
            type_rows(table)
        if dead:
            counts.dead_letters += len(dead)
            bury(dead)
            dead.clear()

    if columnar and _columnar_file(path):
        delimiter = dialect(path)["delimiter"]
        split_sql = typing_sql(
            fs, header, split_source(delimiter, width, delimiter == ","), keep=("__certain",)
        )

        def split(_rs_lines: pa.Table) -> list[int]:  # `_rs_lines` is read by the SQL
            """Split and type a batch of lines; the numbers of the lines not certain."""
            typed = con.sql(split_sql).to_arrow_table()
            del _rs_lines
            certain = typed["__certain"]
            unsure: list[int] = []
            if not pc.all(certain).as_py():
                unsure = typed.filter(pc.invert(certain))["_row_number"].to_pylist()
                typed = typed.filter(certain)
            counts.columnar_rows += insert_typed(typed)
            flush()
            return unsure

        _read_columnar(
            path, fs, sha256, width, batch, dead, flush, split, batch_rows, batch_bytes, counts
        )
    else:
        _read(path, fs, sha256, width, batch, dead, flush, batch_rows, batch_bytes, counts)
    flush()
    return counts


_UNCLOSED = "bad row: unclosed quote (a quoted field is still open at the end of the line)"


class _LineReader:
    """The reference reading of one data line: `read(number, text, error)` appends its
    (number, text, *fields) to `batch`, or its dead letter to `dead`, or counts it blank."""

    def __init__(self, path, fs, sha256, width, batch, dead, counts) -> None:
        self.feed = _Feed()
        self.reader = csv.reader(self.feed, **dialect(path))
        self.source, self.sha256, self.width = fs.source, sha256, width
        self.batch, self.dead, self.counts = batch, dead, counts

    def read(self, number: int, text: str, error: str | None) -> None:
        feed, width = self.feed, self.width
        fields: list[str] = []
        if error is None:
            feed.line, feed.starved = text, False
            try:
                fields = next(self.reader)
            except csv.Error as exc:
                error = f"bad row: {exc}"
            except StopIteration:  # not expected: a line always gives a record
                pass
            if feed.starved:
                error = _UNCLOSED
            feed.line = None
        if error is not None:
            self.dead.append(DeadLetter(self.source, f"{self.sha256}:{number}", text, error))
        elif not fields or (len(fields) == 1 and not fields[0].strip()):
            self.counts.blank += 1
        elif len(fields) != width:
            self.dead.append(
                DeadLetter(
                    self.source,
                    f"{self.sha256}:{number}",
                    text,
                    f"row has {len(fields)} fields, the header has {width}",
                )
            )
        else:
            self.batch.append((number, text, *fields))


def _read(path, fs, sha256, width, batch, dead, flush, batch_rows, batch_bytes, counts) -> None:
    """Append each data line's (number, text, *fields) to `batch` (bad lines to `dead`), one
    record per physical line; counts the lines read, the header and the blank lines."""
    line_reader = _LineReader(path, fs, sha256, width, batch, dead, counts)
    read = line_reader.read
    with open(path, "rb") as handle:
        lines = physical_lines(handle)
        if next(lines, None) is None:  # the header, checked by read_header
            return
        counts.lines_read = counts.header = 1
        number = pending = 0
        for text, error in lines:
            number += 1  # the line's number after the header
            pending += len(text)
            read(number, text, error)
            if len(batch) >= batch_rows or len(dead) >= batch_rows or pending >= batch_bytes:
                flush()
                pending = 0
        counts.lines_read += number


# -- column-wise: the lines whose fields are certain, split by Arrow ------------------------------

_FIELD_LIMIT = 16 * 1024 * 1024  # csv.field_size_limit above: a longer line is the reference's
_CHUNK = 1 << 26  # at most this many bytes read at a time


def _columnar_file(path: Path) -> bool:
    """Whether the column-wise reader takes this file: UTF-8 (with or without its BOM); a
    UTF-16 file is read by the reference alone."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return not (head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE))


def split_source(delimiter: str, width: int, quoted: bool) -> str:
    """The relation of `_rs_lines(_row_number, _raw)` split by DuckDB into `_rs_batch`'s columns
    `__c0..`, with `__certain`: whether those are exactly the csv module's fields for the line.
    They are for a line (its text without the line end and the one `\\r` before it, which
    `physical_lines` drops) with no quote (CSV; a TSV is read with QUOTE_NONE), no other
    carriage return, no NUL and exactly `width` fields (no such line is blank when the header
    has two columns or more: the caller sends none otherwise). The rest is the reference's."""
    fields = ", ".join(f"__f[{k + 1}] as __c{k}" for k in range(width))
    certain = f"len(__f) = {width} and not contains(_raw, chr(13)) and not contains(_raw, chr(0))"
    if quoted:
        certain += " and not contains(_raw, chr(34))"
    return (
        f"(select _row_number, _raw, {certain} as __certain, {fields} from (select _row_number, "
        f"_raw, string_split(_raw, chr({ord(delimiter)})) as __f from _rs_lines))"
    )


def _utf8_lines(data: bytes, array: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per line: is it valid UTF-8? (Only the lines with a byte above 0x7f are decoded; a `\\n`
    is never inside a UTF-8 sequence, so each line decodes on its own.)"""
    valid = np.ones(len(ends), bool)
    for i in np.flatnonzero(_per_line(array >= 0x80, starts, ends)).tolist():
        try:
            data[starts[i] : ends[i]].decode("utf-8")
        except UnicodeDecodeError:
            valid[i] = False
    return valid


def _per_line(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many bytes of each line `starts[i]..ends[i]` (inclusive) `mask` marks."""
    total = np.cumsum(mask, dtype=np.int32)
    return total[ends] - total[starts] + mask[starts]


def _text_array(data: np.ndarray, starts, ends, has_cr) -> pa.Array:
    """Every line's text (no `\\n`, no `\\r` before it) as one Arrow string array (`data`
    is valid UTF-8: the caller checked; a line end never splits a character)."""
    keep = np.ones(len(data), bool)
    keep[ends] = False
    keep[ends[has_cr] - 1] = False
    lengths = ends - starts - has_cr
    offsets = np.zeros(len(ends) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buffer = data[keep]
    return pa.Array.from_buffers(
        pa.large_string(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(buffer)]
    )


def _read_columnar(
    path, fs, sha256, width, batch, dead, flush, split, batch_rows, batch_bytes, counts
) -> None:
    """`_read`'s contract for a UTF-8 file, column-wise: the file is read in chunks of whole
    lines, found with numpy; the lines that are valid UTF-8 go to `split` as one Arrow table
    `_rs_lines(_row_number, _raw)` per batch, which DuckDB splits at the delimiter and types
    (`split_source`, then the typing SQL), and `split` gives back the lines whose fields were
    not certain; those, and the lines not valid UTF-8, are read one by one by the reference
    (`_LineReader`, with `physical_lines`' decoding), so every dead letter and blank line the
    reader finds is the reference's, and the typing SQL is the same for both kinds of rows."""
    line_reader = _LineReader(path, fs, sha256, width, batch, dead, counts)
    number = 0  # the last line's number after the header
    pending = 0  # bytes of the reference's lines since the last flush

    def reference(line: bytes, n: int) -> None:
        """Line `n` (with its `\\n`), read as `physical_lines` and `_read` read it."""
        nonlocal pending
        line = line[:-1]
        pending += len(line)
        if line[-1:] == b"\r":
            line = line[:-1]
        try:
            text, error = line.decode("utf-8"), None
        except UnicodeDecodeError:
            text, error = line.decode("utf-8", "replace"), _encoding_error(line, "utf-8")
        line_reader.read(n, text, error)
        if len(batch) >= batch_rows or len(dead) >= batch_rows or pending >= batch_bytes:
            flush()
            pending = 0

    def chunk(data: bytes) -> None:
        """Whole lines, each ending with `\\n`: split and typed by DuckDB in batches of at most
        `batch_rows`, those whose fields are not certain (`split_source`), not valid UTF-8 or
        too long read by the reference. Their order in the raw table differs, not what lands."""
        nonlocal number
        array = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(array == 10)
        starts = np.concatenate(([0], ends[:-1] + 1))
        first = number + 1  # the chunk's first line's number
        number += len(ends)
        ok = ends - starts <= _FIELD_LIMIT
        if width < 2:
            ok[:] = False
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:  # the lines that are not UTF-8 are the reference's
            ok &= _utf8_lines(data, array, starts, ends)
        for i in np.flatnonzero(~ok).tolist():
            reference(data[starts[i] : ends[i] + 1], first + i)
        if not ok.any():
            return
        has_cr = np.zeros(len(ends), bool)
        nonempty = ends > starts
        has_cr[nonempty] = array[ends[nonempty] - 1] == 13
        texts = _text_array(array, starts, ends, has_cr)
        numbers = np.arange(first, first + len(ends), dtype=np.int64)
        if not ok.all():
            texts, numbers = texts.filter(pa.array(ok)), numbers[ok]
        texts = texts.cast(pa.string())
        for at in range(0, len(texts), batch_rows):
            part = pa.Table.from_arrays(
                [pa.array(numbers[at : at + batch_rows]), texts.slice(at, batch_rows)],
                names=["_row_number", "_raw"],
            )
            for n in split(part):
                i = n - first
                reference(data[starts[i] : ends[i] + 1], n)

    with open(path, "rb") as handle:
        head = handle.read(3)
        handle.seek(3 if head == codecs.BOM_UTF8 else 0)
        first = handle.readline()  # the header, checked by read_header
        if not first:
            return
        counts.lines_read = counts.header = 1
        rest = b""
        size = min(max(batch_bytes, 64), _CHUNK)  # a batch's input at a time
        while block := handle.read(size):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut:
                chunk(data[:cut])
            rest = data[cut:]
        if rest:
            chunk(rest + b"\n")  # the last line has no line end: the same line
    counts.lines_read += number
