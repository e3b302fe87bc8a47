"""NDJSON readers: returns SaaS webhook deliveries (DESIGN §2.4) and Shopify refunds (§2.5).

One JSON object per line. Each line is converted against the contract's column types (nested
STRUCT lists included); a line that is not JSON, not an object, misses a required field or holds a
value of the wrong type or out of its type's range goes to the dead letters with the reason, and
the rest of the file lands: no line stops a run (DESIGN §12). Rows are collected in column lists
and inserted as one Arrow table per batch.

Encodings (`ndjson_lines`, also used for the CDC files): a UTF-8 byte order mark is stripped (at
the start of the file or of any line); a file that starts with a UTF-16 (or UTF-32) byte order mark
is decoded as such; any other line that is not valid UTF-8 is the dead letter
`invalid_encoding: …`. Accounting (`LineTally`): every line that is not blank (whitespace only)
is exactly one landed row or one dead letter; blank lines are counted apart and land nothing.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

import pyarrow as pa

from pipelines.lib.coltypes import Spec, arrow_schema, parse_type
from pipelines.lib.contracts import FILE_META_COLUMNS, FileSource
from pipelines.lib.files.fastrow import compile_builder, fast_dumps
from pipelines.lib.files.values import Problems, _type_name, compile_converter, dumps
from pipelines.lib.warehouse import DeadLetter

# Webhook contract columns of the delivery envelope; every other column (but `payload`, the whole
# payload as JSON) is a field of the delivery's `payload`, under the same name except these:
WEBHOOK_ENVELOPE = ("webhook_id", "topic", "delivered_at")
WEBHOOK_PAYLOAD_KEYS = {"return_id": "id"}  # column -> payload key


class _Floats:
    """`parse_float` that notes whether the line had a JSON float (then the fast dump is off)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, text: str) -> Decimal:
        self.seen = True
        return Decimal(text)


_fast_dumps = fast_dumps  # orjson (installed with dagster-dbt), ~5x faster than json

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(obj: Any) -> bool:
    """json.loads keeps an escaped unpaired surrogate (`"\\ud800"`), which no UTF-8 text (nor
    Arrow, nor DuckDB) can hold."""
    try:
        json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:  # too deep to check here: the reference converter decides
        return False
    return False


# -- lines and encodings (NDJSON drops and CDC files) ---------------------------------------------

BOM_UTF8 = codecs.BOM_UTF8
_WIDE_BOMS = (  # UTF-32 first: its little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
_BAD_WIDE = "returnsync.bad-wide-text"
# An undecodable UTF-16/32 sequence becomes a lone surrogate, which no UTF-8 line can hold: the
# line is then refused by the UTF-8 check like any other invalid line (`invalid_encoding`).
codecs.register_error(_BAD_WIDE, lambda exc: ("\udcff", exc.end))


@dataclass
class LineTally:
    """How the lines of one file were read: `lines_read` (every line) = `blank_lines` (whitespace
    only: they hold no record) + one landed row, dead letter or skipped duplicate per other line."""

    lines_read: int = 0
    blank_lines: int = 0
    encoding: str = "UTF-8"  # as found: UTF-8, UTF-16 or UTF-32 (by the byte order mark)


def ndjson_lines(handle: IO[bytes], counts: LineTally | None = None) -> Iterable[bytes]:
    """The lines of an NDJSON file opened in binary mode, as UTF-8 bytes (line end kept).

    A UTF-8 byte order mark at the start is skipped. A file starting with a UTF-16 or UTF-32 byte
    order mark is decoded (streaming) and each line re-encoded as UTF-8; a sequence that does
    not decode leaves bytes that are not UTF-8, so that line alone is `invalid_encoding`. For an
    ordinary file the handle itself is returned: the hot loop iterates the file directly.
    """
    head = handle.read(4)
    for bom, codec, name in _WIDE_BOMS:
        if head.startswith(bom):
            handle.seek(len(bom))
            if counts is not None:
                counts.encoding = name
            return _wide_lines(handle, codec)
    handle.seek(len(BOM_UTF8) if head.startswith(BOM_UTF8) else 0)
    return handle


def _wide_lines(handle: IO[bytes], codec: str) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder(codec)(errors=_BAD_WIDE)
    pending = ""
    while True:
        chunk = handle.read(1 << 16)
        parts = (pending + decoder.decode(chunk, final=not chunk)).split("\n")
        pending = parts.pop()
        for part in parts:
            yield (part + "\n").encode("utf-8", "surrogatepass")
        if not chunk:
            break
    if pending:
        yield pending.encode("utf-8", "surrogatepass")


def invalid_encoding(line: bytes, exc: UnicodeDecodeError, encoding: str = "UTF-8") -> str:
    """The dead-letter reason of a line that is not valid UTF-8 (DESIGN §12)."""
    if encoding != "UTF-8":
        return f"invalid_encoding: the line is not valid {encoding} (the file has a {encoding} BOM)"
    return (
        f"invalid_encoding: byte 0x{line[exc.start]:02x} at offset {exc.start} of the line "
        "is not valid UTF-8"
    )


def raw_line(line: bytes) -> str:
    """A line as dead-letter text: bytes that are not UTF-8 kept as `\\xNN` escapes."""
    return line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")


def _not_json(name: str) -> Any:
    """`parse_constant`: NaN and Infinity are not JSON (RFC 8259; orjson refuses them too)."""
    raise ValueError(f"{name} is not a JSON value")


class RowConverter:
    """Turns one parsed JSON object into the contract's column values (or reasons to refuse it)."""

    def __init__(self, fs: FileSource) -> None:
        self.fs = fs
        self.webhook = fs.raw_table == "returns_saas_webhooks"
        specs: dict[str, Spec] = {name: parse_type(kind) for name, kind in fs.columns.items()}
        self.columns = tuple(specs)
        # (column, key in its object, path, converter); webhook payload fields come from `payload`
        # and, the payload being stored whole, their unknown fields are not copied to _extra
        self.top: list[tuple[str, str, Any, Any]] = []
        self.inner: list[tuple[str, str, Any, Any]] = []
        for name, spec in specs.items():
            if self.webhook and name == "payload":
                continue
            if self.webhook and name not in WEBHOOK_ENVELOPE:
                key = WEBHOOK_PAYLOAD_KEYS.get(name, name)
                self.inner.append((name, key, ("payload", key), compile_converter(spec, False)))
            else:
                self.top.append((name, name, name, compile_converter(spec)))
        envelope = frozenset((*WEBHOOK_ENVELOPE, "payload"))
        self.known = envelope if self.webhook else frozenset(specs)
        where = {name: ("top", key) for name, key, _, _ in self.top}
        where.update({name: ("inner", key) for name, key, _, _ in self.inner})
        where["payload"] = ("top", "payload")
        self.required = [(name, *where[name]) for name in fs.required]

    def required_path(self, column: str) -> str:
        if self.webhook and column not in WEBHOOK_ENVELOPE:
            return f"payload.{WEBHOOK_PAYLOAD_KEYS.get(column, column)}"
        return column

    def convert(
        self, obj: dict, problems: Problems, floats: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        row = {name: conv(obj.get(key), path, problems) for name, key, path, conv in self.top}
        payload: dict = {}
        if self.webhook:
            raw_payload = obj.get("payload")
            if type(raw_payload) is dict:
                payload = raw_payload
            elif raw_payload is not None:
                got = _type_name(raw_payload)
                problems.errors.append(f"wrong type in 'payload': expected an object, got {got}")
            for name, key, path, conv in self.inner:
                row[name] = conv(payload.get(key), path, problems)
            row["payload"] = (dumps if floats else _fast_dumps)(payload) if payload else None
        for name, place, key in self.required:
            if row[name] is None and (obj if place == "top" else payload).get(key) is None:
                problems.errors.append(f"missing required field {self.required_path(name)!r}")
        if self.known.issuperset(obj):
            extra = dict(problems.extra)
        else:
            extra = {k: v for k, v in obj.items() if k not in self.known}
            extra.update(problems.extra)
        return row, extra


def land_ndjson(
    con,
    fs: FileSource,
    path,
    rel: str,
    sha256: str,
    ingested_at,
    insert: Callable[[pa.Table], None],
    bury: Callable[[list[DeadLetter]], int],
    batch_rows: int,
    batch_bytes: int = 1 << 62,
    *,
    fast: bool = True,
    counts: LineTally | None = None,
) -> tuple[int, int]:
    """Read `path` line by line, insert good rows in Arrow batches (of `batch_rows` rows or
    `batch_bytes` bytes of input, whichever comes first); returns (rows, dead letters).

    Each parsed line goes through the generated builder of `fastrow` first (unless `fast` is
    False) and through `RowConverter`, the reference, when the builder declines it. No line
    raises: whatever the reference cannot convert is a dead letter with its reason. `counts`, if
    given, receives the lines read (blank lines + rows + dead letters) and the blank lines.
    """
    counts = LineTally() if counts is None else counts
    convert = LineConverter(fs, rel, sha256, ingested_at, fast=fast, encoding=counts.encoding)
    schema = convert.schema
    good: list[tuple] = []
    dead: list[DeadLetter] = []
    rows = buried = pending_bytes = 0

    def flush() -> None:
        nonlocal rows, buried, pending_bytes
        pending_bytes = 0
        if good:
            rows += len(good)
            insert(rows_table(good, schema))
            good.clear()
        if dead:
            buried += bury(dead)
            dead.clear()

    number = blank = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(ndjson_lines(handle, counts), start=1):
            if line.isspace():
                blank += 1
                continue
            pending_bytes += len(line)
            out = convert(number, line)
            if type(out) is DeadLetter:
                dead.append(out)
                if len(dead) >= batch_rows or pending_bytes >= batch_bytes:
                    flush()
            else:
                good.append(out)
                if len(good) >= batch_rows or pending_bytes >= batch_bytes:
                    flush()
    flush()
    counts.lines_read += number
    counts.blank_lines += blank
    return rows, buried


def rows_table(good: list[tuple], schema: pa.Schema) -> pa.Table:
    """Row tuples (meta columns, `_extra`, contract columns) as one Arrow table."""
    arrays = [
        pa.array(values, type=field.type)
        for values, field in zip(zip(*good, strict=True), schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


class LineConverter:
    """The reference conversion of one NDJSON line (not blank): `convert(number, line)` gives
    the row's tuple (meta columns, `_extra`, contract columns, in `schema`'s order) or its
    `DeadLetter` with the reason. No line raises. With `fast`, the generated builder of
    `fastrow` is tried first; `RowConverter` decides whatever it declines."""

    def __init__(
        self, fs: FileSource, rel: str, sha256: str, ingested_at, *, fast: bool = True,
        encoding: str = "UTF-8",
    ) -> None:  # fmt: skip
        self.fs = fs
        self.meta = (rel, sha256)
        self.ingested_at = ingested_at
        self.encoding = encoding
        self.converter = RowConverter(fs)
        self.columns = tuple(self.converter.columns)
        self.builders = (
            (compile_builder(fs), compile_builder(fs, exact_numbers=True)) if fast else None
        )
        self.schema = arrow_schema({**FILE_META_COLUMNS, **fs.columns})

    def __call__(self, number: int, line: bytes) -> tuple | DeadLetter:
        fs = self.fs
        rel, sha256 = self.meta
        error = None
        floats = _Floats()
        try:
            obj = json.loads(line.decode(), parse_float=floats, parse_constant=_not_json)
        except UnicodeDecodeError as exc:
            error = invalid_encoding(line, exc, self.encoding)
        except (ValueError, RecursionError) as exc:
            obj, error = _parse_after_bom(line, floats, exc)
        if error is None:
            if type(obj) is not dict:
                error = f"wrong type: the line is {_type_name(obj)}, expected a JSON object"
            elif _SURROGATE_ESCAPE.search(line) and _lone_surrogate(obj):
                error = "bad JSON: a string holds an unpaired UTF-16 surrogate (not storable)"
        if error is None and self.builders is not None:
            try:
                built = self.builders[floats.seen](obj)
            except Exception:  # Slow (or a value it did not expect): the reference decides
                pass
            else:
                return (rel, sha256, number, self.ingested_at, *built)
        if error is None:
            problems = Problems()
            try:
                row, extra = self.converter.convert(obj, problems, floats.seen)
                if problems.errors:
                    error = "; ".join(problems.errors)
                elif extra:
                    extra_text = (dumps if floats.seen else _fast_dumps)(extra)
                else:
                    extra_text = None
            except Exception as exc:  # e.g. too deep to write back as JSON: never stops a run
                error = f"bad value: {type(exc).__name__}: {str(exc)[:200]}"
        if error is not None:
            return DeadLetter(fs.source, f"{sha256}:{number}", raw_line(line), error)
        row_values = (row[c] for c in self.columns)
        return (rel, sha256, number, self.ingested_at, extra_text, *row_values)


def _parse_after_bom(line: bytes, floats: _Floats, exc: Exception) -> tuple[Any, str | None]:
    """A line json refused: parsed again without a UTF-8 byte order mark in front (files joined
    from several exports keep one per part), else the reason."""
    if line.startswith(BOM_UTF8):
        try:
            return json.loads(line[3:].decode(), parse_float=floats, parse_constant=_not_json), None
        except UnicodeDecodeError:  # pragma: no cover - the whole line was decoded before
            pass
        except (ValueError, RecursionError) as again:
            exc = again
    return None, f"bad JSON: {exc}"
