"""Column-wise landing of NDJSON file drops with DuckDB's JSON reader (DESIGN §3, §10; issue 23).

The per-line reader (`ndjson.LineConverter`: the generated builder of `fastrow`, then
`RowConverter`) is the reference: what it lands, and what it dead-letters with which reason, is
the contract. This module converts the same lines column-wise and is exactly as strict, by
construction:

- Each batch of lines is converted by ONE DuckDB `json_transform` into the contract's typed
  columns (strings unescaped, integers, decimals, times with their offsets to UTC, nested lists
  of structs), for the lines whose result is certain, decided per line in Python at C speed:
  the line is exactly what orjson writes back (`orjson.dumps(orjson.loads(line)) == line`:
  compact, no key twice in any object, no number orjson would rewrite, nothing after the JSON
  but the line end, valid UTF-8), it holds no `\\u` escape and no number with an exponent, and
  every field the contract types has exactly the JSON type and form on which DuckDB's typed
  reading and the reference agree (`_checker`: strings; integers in range; decimals as integers
  or plain decimal strings within the column's digits and scale, so no rounding; ISO times with
  `Z` or an offset, which `datetime.fromisoformat` reads, in years 2-9998; objects and lists
  where the contract has them), and every required field is there.
- Every other line goes, as its bytes, to the reference converter, which lands it or
  dead-letters it with its own reason. Every dead letter therefore comes from the reference
  code: same rows, same position (`<file sha256>:<line number>`), same error, same `reason_code`.
- `_extra` and the webhook `payload` (JSON text) are written by orjson from the parsed line, as
  the reference writes them for such a line: the unknown top-level fields in line order, then
  each nested object's unknown fields under its rendered path (`refund_line_items[0].line_item`
  before `refund_line_items[0]`).

A source whose contract has a type this module does not convert (json columns other than the
webhook payload, date, double, ...) is landed by the reference alone (`supported`).
`tests/files/test_columnar_files_diff.py` lands the shared fixtures, the hostile corpus and
simulated landscapes both ways and requires identical raw tables, ledgers and dead letters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from itertools import compress
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.lib.coltypes import Spec, parse_type
from pipelines.lib.contracts import FILE_SOURCE_BY_TABLE, FileSource
from pipelines.lib.files.ndjson import (
    WEBHOOK_ENVELOPE,
    WEBHOOK_PAYLOAD_KEYS,
    LineConverter,
    LineTally,
    ndjson_lines,
    rows_table,
)
from pipelines.lib.warehouse import DeadLetter

_SCALAR_KINDS = ("varchar", "bigint", "integer", "boolean", "timestamptz", "decimal")
_INT_BOUND = {"bigint": 2**63, "integer": 2**31}
# ISO times that datetime.fromisoformat and DuckDB read alike (an explicit offset: DuckDB would
# read a naive time in the session's time zone, the reference as UTC)
_ISO_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
# A number with an exponent: orjson writes one as `1e+16` or `1e-7` (never without the sign),
# which the reference's exact writer (Decimal) spells otherwise. The substring test is fast; the
# regex only confirms the lines that have one (in a UUID, say).
_EXPONENT_RE = re.compile(rb"[:,\[]-?[0-9]+(?:\.[0-9]+)?e[-+]")


def _column_ok(spec: Spec) -> bool:
    if spec.kind == "struct":
        return all(_column_ok(sub) for _, sub in spec.fields)
    if spec.kind == "list":
        assert spec.item is not None
        return _column_ok(spec.item)
    return spec.kind in _SCALAR_KINDS


def supported(fs: FileSource) -> bool:
    """Whether every contract column of this NDJSON source converts column-wise."""
    if fs.format != "ndjson":
        return False
    webhook = fs.raw_table == "returns_saas_webhooks"
    return all(
        (webhook and name == "payload") or _column_ok(parse_type(kind))
        for name, kind in fs.columns.items()
    )


def warm_up(fs: FileSource) -> None:
    """Compile this source's certainty check and conversion SQL now (`landing.warm_up`)."""
    _compiled_check(fs.raw_table)
    _plan(fs.raw_table)
    chunk_sql(fs.raw_table)


# -- the Python half: which lines are certain, and their `_extra` -------------------------------


@cache
def _plan(raw_table: str) -> tuple[frozenset[str], tuple]:
    """(known top-level keys, (column, walker) of the columns whose nested objects keep their
    unknown fields in `_extra`) of one source."""
    fs = FILE_SOURCE_BY_TABLE[raw_table]
    if raw_table == "returns_saas_webhooks":  # the payload is kept whole
        return frozenset((*WEBHOOK_ENVELOPE, "payload")), ()
    specs = {name: parse_type(kind) for name, kind in fs.columns.items()}
    nested = tuple((n, w) for n, s in specs.items() if (w := _walker(s)) is not None)
    return frozenset(specs), nested


def _walker(spec: Spec) -> Callable[[Any, str, dict], None] | None:
    """`walk(value, path, extra)`: the unknown fields of nested objects into `extra` under their
    rendered path (values.render), as RowConverter collects them; None when `spec` has no
    object."""
    if spec.kind == "struct":
        known = frozenset(name for name, _ in spec.fields)
        subs = [(name, w) for name, sub in spec.fields if (w := _walker(sub)) is not None]

        def struct(value: Any, path: str, extra: dict) -> None:
            if type(value) is not dict:
                return
            for name, walk in subs:
                walk(value.get(name), f"{path}.{name}", extra)
            if not known.issuperset(value):
                extra[path] = {k: v for k, v in value.items() if k not in known}

        return struct
    if spec.kind == "list":
        assert spec.item is not None
        item = _walker(spec.item)
        if item is None:
            return None

        def items(value: Any, path: str, extra: dict) -> None:
            if type(value) is list:
                for i, x in enumerate(value):
                    item(x, f"{path}[{i}]", extra)

        return items
    return None


class _CheckGen:
    """Python source of one source's certainty check (the same rules as `_checker`, inlined:
    no call per field; compiled once per source, as `fastrow` compiles its row builder)."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {"_iso": _ISO_RE.fullmatch, "_fromiso": datetime.fromisoformat}
        self.n = 0

    def var(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def check(self, spec: Spec, v: str, pad: str) -> list[str]:
        """Statements that `return False` unless value `v` (None: missing or null) is certain."""
        kind = spec.kind
        if kind == "varchar":
            return [f"{pad}if {v} is not None and type({v}) is not str: return False"]
        if kind in _INT_BOUND:
            b = _INT_BOUND[kind]
            return [
                f"{pad}if {v} is not None and (type({v}) is not int or not {-b} <= {v} < {b}):",
                f"{pad}    return False",
            ]
        if kind == "boolean":
            return [f"{pad}if {v} is not None and type({v}) is not bool: return False"]
        if kind == "decimal":
            whole, scale = spec.precision - spec.scale, spec.scale
            fraction = rf"(?:\.[0-9]{{1,{scale}}})?" if scale else ""
            plain = self.var("_dec")
            self.env[plain] = re.compile(rf"[+-]?[0-9]{{1,{whole}}}{fraction}").fullmatch
            return [
                f"{pad}if {v} is not None:",
                f"{pad}    if type({v}) is str:",
                f"{pad}        if {plain}({v}) is None: return False",
                f"{pad}    elif type({v}) is not int or not {-(10**whole)} < {v} < {10**whole}:",
                f"{pad}        return False",
            ]
        if kind == "timestamptz":
            return [
                f"{pad}if {v} is not None:",
                f"{pad}    if type({v}) is not str or _iso({v}) is None: return False",
                f"{pad}    if not '0002' <= {v}[:4] <= '9998': return False",
                f"{pad}    try:",
                f"{pad}        _fromiso({v})",
                f"{pad}    except ValueError:",
                f"{pad}        return False",
            ]
        if kind == "struct":
            out = [f"{pad}if {v} is not None:", f"{pad}    if type({v}) is not dict: return False"]
            for name, sub in spec.fields:
                f = self.var("f")
                out.append(f"{pad}    {f} = {v}.get({name!r})")
                out += self.check(sub, f, pad + "    ")
            return out
        if kind == "list":
            assert spec.item is not None
            x = self.var("x")
            return [
                f"{pad}if {v} is not None:",
                f"{pad}    if type({v}) is not list: return False",
                f"{pad}    for {x} in {v}:",
                *self.check(spec.item, x, pad + "        "),
            ]
        raise ValueError(f"no column-wise conversion for {kind}")  # supported() said so


@cache
def _compiled_check(raw_table: str) -> Callable[[dict], bool]:
    """`check(obj)`: every contract field of the parsed line is certain and every required one
    is there (the webhook payload an object)."""
    fs = FILE_SOURCE_BY_TABLE[raw_table]
    specs = {name: parse_type(kind) for name, kind in fs.columns.items()}
    gen = _CheckGen()
    body = ["def check(obj):"]
    webhook = raw_table == "returns_saas_webhooks"
    if webhook:
        body += ["    p = obj.get('payload')", "    if type(p) is not dict: return False"]
    for name, spec in specs.items():
        if webhook and name == "payload":
            continue
        v = gen.var("c")
        if webhook and name not in WEBHOOK_ENVELOPE:
            body.append(f"    {v} = p.get({WEBHOOK_PAYLOAD_KEYS.get(name, name)!r})")
        else:
            body.append(f"    {v} = obj.get({name!r})")
        if name in fs.required:
            body.append(f"    if {v} is None: return False")
        body += gen.check(spec, v, "    ")
    body.append("    return True")
    source = "\n".join(body) + "\n"
    namespace = dict(gen.env)
    exec(compile(source, f"<columnar check {raw_table}>", "exec"), namespace)  # from contracts
    check = namespace["check"]
    check.source = source
    return check


def certain(body: bytes, raw_table: str) -> tuple[str | None, str | None] | None:
    """(`_extra`, webhook `payload`) texts, as the reference writes them, of a line (without its
    line end) whose conversion in SQL is certain; None when the reference must decide."""
    if body[:1] != b"{" or b"\\u" in body:
        return None
    if (b"e-" in body or b"e+" in body) and _EXPONENT_RE.search(body):
        return None
    try:
        obj = orjson.loads(body)
        if orjson.dumps(obj) != body:
            return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return None
    if not _compiled_check(raw_table)(obj):
        return None
    known, nested = _plan(raw_table)
    payload_text = None
    if raw_table == "returns_saas_webhooks":
        payload = obj["payload"]  # an object: the check said so
        payload_text = orjson.dumps(payload).decode() if payload else None
    extra: dict = {}
    if not known.issuperset(obj):
        extra = {k: v for k, v in obj.items() if k not in known}
        if any("[" in k or "." in k for k in extra):  # the reference's dict would merge them
            return None
    for name, walk in nested:
        walk(obj.get(name), name, extra)
    return (orjson.dumps(extra).decode() if extra else None), payload_text


# -- the SQL half: one typed json_transform per batch ---------------------------------------------


def _typed(spec: Spec, kind: str) -> Any:
    """json_transform's structure for a contract type."""
    if spec.kind == "struct":
        return {name: _typed(sub, "") for name, sub in spec.fields}
    if spec.kind == "list":
        assert spec.item is not None
        return [_typed(spec.item, "")]
    if spec.kind == "decimal":
        return f"DECIMAL({spec.precision},{spec.scale})"
    return spec.kind.upper()


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@cache
def chunk_sql(raw_table: str) -> str:
    """The statement that converts a batch (`_lines`: n BIGINT, line VARCHAR; lines `certain`
    took) of one source: n and the contract columns but the webhook payload."""
    fs = FILE_SOURCE_BY_TABLE[raw_table]
    specs = {name: parse_type(kind) for name, kind in fs.columns.items()}
    cols = []
    if raw_table == "returns_saas_webhooks":
        shape: dict[str, Any] = {n: _typed(specs[n], "") for n in WEBHOOK_ENVELOPE}
        inner = {
            n: WEBHOOK_PAYLOAD_KEYS.get(n, n)
            for n in specs
            if n not in (*WEBHOOK_ENVELOPE, "payload")
        }
        shape["payload"] = {key: _typed(specs[n], "") for n, key in inner.items()}
        for n in fs.columns:
            if n in WEBHOOK_ENVELOPE:
                cols.append(f"r.{_ident(n)} as {_ident(n)}")
            elif n != "payload":
                cols.append(f"r.payload.{_ident(inner[n])} as {_ident(n)}")
    else:
        shape = {n: _typed(s, "") for n, s in specs.items()}
        cols = [f"r.{_ident(n)} as {_ident(n)}" for n in fs.columns]
    return (
        f"select n, {', '.join(cols)} from (select n, json_transform(line, "
        f"{_q(json.dumps(shape))}) as r from _lines)"
    )


def _string_array(bodies: list[bytes]) -> pa.Array:
    """The lines as one Arrow string array without decoding them (orjson checked UTF-8)."""
    lengths = np.fromiter((len(b) for b in bodies), np.int64, len(bodies))
    offsets = np.zeros(len(bodies) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = b"".join(bodies)
    return pa.Array.from_buffers(
        pa.large_string(), len(bodies), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def land_ndjson_columnar(
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
    counts: LineTally | None = None,
) -> tuple[int, int, int]:
    """`ndjson.land_ndjson`'s contract, converting each batch of lines in SQL where certain
    and by the reference elsewhere; returns (rows, dead letters, rows converted in SQL)."""
    counts = LineTally() if counts is None else counts
    sql = chunk_sql(fs.raw_table)
    webhook = fs.raw_table == "returns_saas_webhooks"
    required = [name for name in fs.required if name != "payload"]
    rows = buried = in_sql = 0
    number = blank = 0
    with open(path, "rb") as handle:
        lines = ndjson_lines(handle, counts)
        convert = LineConverter(fs, rel, sha256, ingested_at, encoding=counts.encoding)
        schema = convert.schema
        wide = counts.encoding != "UTF-8"
        pending: list[tuple[int, bytes]] = []
        pending_bytes = 0

        def flush() -> None:
            nonlocal rows, buried, in_sql, pending_bytes
            numbers: list[int] = []
            bodies: list[bytes] = []
            extras: list[str | None] = []
            payloads: list[str | None] = []
            refs: list[tuple[int, bytes]] = []
            table = fs.raw_table
            for n, line in pending:
                body = line[:-1] if line[-1:] == b"\n" else line
                texts = None if wide else certain(body, table)
                if texts is None:
                    refs.append((n, line))
                else:
                    numbers.append(n)
                    bodies.append(body)
                    extras.append(texts[0])
                    payloads.append(texts[1])
            if numbers:
                n_array = pa.array(numbers, pa.int64())
                _lines = pa.table({"n": n_array, "line": _string_array(bodies)})
                out = con.sql(sql).to_arrow_table()  # one row per line, in order (no filter)
                del _lines
                if out.num_rows != len(numbers) or not out["n"].equals(pa.chunked_array([n_array])):
                    raise RuntimeError("column-wise NDJSON: DuckDB returned other lines")  # a bug
                # defensive: a required value DuckDB did not read goes to the reference
                lost = None
                for name in required:
                    nulls = pc.is_null(out[name])
                    lost = nulls if lost is None else pc.or_(lost, nulls)
                keep = None if lost is None or not pc.any(lost).as_py() else pc.invert(lost)
                if keep is not None:
                    for i in np.flatnonzero(lost.to_numpy(zero_copy_only=False)).tolist():
                        refs.append((numbers[i], bodies[i] + b"\n"))
                    refs.sort()
                    out = out.filter(keep)
                    extras = list(compress(extras, keep.to_pylist()))
                    payloads = list(compress(payloads, keep.to_pylist()))
                size = out.num_rows
                arrays = [
                    pa.array([rel] * size, pa.string()),
                    pa.array([sha256] * size, pa.string()),
                    out["n"],
                    pa.array([ingested_at] * size, schema.field("_ingested_at").type),
                    pa.array(extras, pa.string()),
                ]
                for name in fs.columns:
                    if webhook and name == "payload":
                        arrays.append(pa.array(payloads, pa.string()))
                    else:
                        arrays.append(out[name])
                if size:
                    insert(pa.Table.from_arrays(arrays, names=schema.names))
                rows += size
                in_sql += size
            good_rows: list[tuple] = []
            dead: list[DeadLetter] = []
            for n, line in refs:
                converted = convert(n, line)
                if type(converted) is DeadLetter:
                    dead.append(converted)
                else:
                    good_rows.append(converted)
            if good_rows:
                insert(rows_table(good_rows, schema))
                rows += len(good_rows)
            if dead:
                buried += bury(dead)
            pending.clear()
            pending_bytes = 0

        for number, line in enumerate(lines, start=1):
            if line.isspace():
                blank += 1
                continue
            pending.append((number, line))
            pending_bytes += len(line)
            if len(pending) >= batch_rows or pending_bytes >= batch_bytes:
                flush()
        flush()
    counts.lines_read += number
    counts.blank_lines += blank
    return rows, buried, in_sql
