"""Column-wise landing of NDJSON file drops with DuckDB's JSON functions (DESIGN §3, §10; issue 23).

The per-line reader (`ndjson.LineConverter`: the generated builder of `fastrow`, then
`RowConverter`) is the reference: what it lands, and what it dead-letters with which reason, is
the contract. This module converts the same lines column-wise, in one SQL statement per batch of
lines, and is exactly as strict by construction:

- A line is converted in SQL only when its result is certain. In Python (C speed): the line is
  the object that orjson writes back byte for byte (`orjson.dumps(orjson.loads(line)) == line`:
  compact, no key twice in any object, no number orjson would rewrite, no line end but `\\n`,
  valid UTF-8); it holds no `\\u` escape. In SQL: DuckDB writes it back unchanged too
  (`json(line) = line`), so every JSON text taken from it (the webhook `payload`, the values
  kept in `_extra`) is the text the reference writes; it has no number with an exponent; every
  field the contract types is of exactly the JSON type the reference's fast builder accepts, in
  range (integers by digits and range, decimal strings with at most the column's scale and
  digits, ISO times of the plain forms in years 2-9998, nested objects and lists), and every
  required field is there.
- Every other line goes, as its bytes, to the reference converter, which lands it or
  dead-letters it with its own reason. Every dead letter therefore comes from the reference
  code: same rows, same position (`<file sha256>:<line number>`), same error, same `reason_code`.
- `_extra` is built as the reference builds it: the unknown top-level fields in line order, then
  each nested object's unknown fields under its rendered path (`refund_line_items[0].line_item`
  before `refund_line_items[0]`), as JSON text.

A source whose contract has a type this module does not convert (json columns other than the
webhook payload, date, double, ...) is landed by the reference alone (`supported`).
`tests/files/test_columnar_files_diff.py` lands the shared fixtures, the hostile corpus and
simulated landscapes both ways and requires identical raw tables, ledgers and dead letters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.lib.coltypes import Spec, _split_top, parse_type
from pipelines.lib.contracts import FILE_SOURCE_BY_TABLE, FileSource
from pipelines.lib.files.ndjson import (
    WEBHOOK_ENVELOPE,
    WEBHOOK_PAYLOAD_KEYS,
    LineConverter,
    LineTally,
    ndjson_lines,
    rows_table,
)
from pipelines.lib.files.values import render
from pipelines.lib.warehouse import DeadLetter

_SCALAR_KINDS = ("varchar", "bigint", "integer", "boolean", "timestamptz", "decimal")
# ISO times the reference's datetime.fromisoformat reads exactly as DuckDB's cast does
_ISO = (
    r'"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5]'
    r'[0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"'
)


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _flat(spec: Spec) -> bool:
    """A scalar, or a struct of scalars."""
    if spec.kind == "struct":
        return all(sub.kind in _SCALAR_KINDS for _, sub in spec.fields)
    return spec.kind in _SCALAR_KINDS


def _column_ok(spec: Spec) -> bool:
    """Top-level columns this module converts: scalars, lists of structs of flat fields."""
    if spec.kind == "list":
        assert spec.item is not None
        return spec.item.kind == "struct" and all(_flat(sub) for _, sub in spec.item.fields)
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


def _scalar(spec: Spec, t: str) -> tuple[str, str]:
    """(certain, value) SQL for a scalar from `t`, its JSON text (NULL when missing or null)."""
    kind = spec.kind
    if kind == "varchar":
        ok = f"({t} is null or starts_with({t}, '\"'))"
        v = (
            f"case when {t} is null then null when contains({t}, '\\') "
            f"then json_extract_string({t}, '$') else substr({t}, 2, length({t}) - 2) end"
        )
        return ok, v
    if kind in ("bigint", "integer"):
        typ = kind.upper()
        ok = (
            f"({t} is null or (regexp_full_match({t}, '-?[0-9]{{1,19}}') "
            f"and try_cast({t} as {typ}) is not null))"
        )
        return ok, f"try_cast({t} as {typ})"
    if kind == "boolean":
        return f"({t} is null or {t} in ('true', 'false'))", f"({t} = 'true')"
    if kind == "decimal":
        p, s = spec.precision, spec.scale
        whole = p - s
        fraction = rf"(\.[0-9]{{1,{s}}})?" if s else ""
        ok = (
            f"({t} is null or regexp_full_match({t}, '-?[0-9]{{1,{whole}}}') "
            f"or regexp_full_match({t}, '\"[+-]?[0-9]{{1,{whole}}}{fraction}\"'))"
        )
        return ok, f"try_cast(trim({t}, '\"') as DECIMAL({p},{s}))"
    if kind == "timestamptz":
        inner = f"substr({t}, 2, length({t}) - 2)"
        text = (
            f"case when regexp_matches({t}, '(Z|[+-][0-9][0-9]:[0-9][0-9])\"$') "
            f"then {inner} else {inner} || '+00:00' end"
        )
        v = f"try_cast({text} as TIMESTAMPTZ)"
        ok = (
            f"({t} is null or (regexp_full_match({t}, {_q(_ISO)}) "
            f"and substr({t}, 2, 4) between '0002' and '9998' and {v} is not null))"
        )
        return ok, f"case when {t} is null then null else {v} end"
    raise ValueError(f"no column-wise conversion for {kind}")  # supported() said so


def _shape(spec: Spec) -> Any:
    """json_transform's structure for a struct (nested structs as objects, else JSON text)."""
    return {name: _shape(sub) if sub.kind == "struct" else "JSON" for name, sub in spec.fields}


def _item(spec: Spec, x: str, type_sql: str) -> tuple[str, str]:
    """(certain, value) of a list item `x` (a struct of JSON texts from json_transform; its
    nested structs' JSON types are checked by the caller)."""
    oks, values = [], []
    for name, sub in spec.fields:
        field = f"{x}.{_ident(name)}"
        if sub.kind == "struct":
            sub_type = _field_type(type_sql, name)
            inner_values = []
            for inner_name, inner in sub.fields:
                ok, v = _scalar(inner, f"{field}.{_ident(inner_name)}::VARCHAR")
                oks.append(ok)
                inner_values.append(f"{_q(inner_name)}: {v}")
            values.append(
                f"{_q(name)}: case when {field} is null then null else "
                f"{{{', '.join(inner_values)}}}::{sub_type} end"
            )
        else:
            ok, v = _scalar(sub, f"{field}::VARCHAR")
            oks.append(ok)
            values.append(f"{_q(name)}: {v}")
    ok = f"({x} is null or ({' and '.join(oks)}))"
    v = f"case when {x} is null then null else {{{', '.join(values)}}}::{type_sql} end"
    return ok, v


@cache
def chunk_sql(raw_table: str) -> str:
    """The statement that converts a chunk (`_lines`: n BIGINT, line VARCHAR; lines that passed
    `_candidate`) of one source: n, ok (the result is certain) and the contract columns but
    the ones built in Python (`_extra` and the webhook payload, `_python_parts`)."""
    fs = FILE_SOURCE_BY_TABLE[raw_table]
    webhook = fs.raw_table == "returns_saas_webhooks"
    specs = {name: parse_type(kind) for name, kind in fs.columns.items()}
    if webhook:
        top = (*WEBHOOK_ENVELOPE, "payload")
        inner = {n: WEBHOOK_PAYLOAD_KEYS.get(n, n) for n in specs if n not in top}
    else:
        top, inner = tuple(specs), {}
    lists = []
    oks, values = [], []
    for name, spec in specs.items():
        if webhook and name == "payload":
            continue
        t = f"p.{_ident(inner[name])}::VARCHAR" if name in inner else f"o.{_ident(name)}::VARCHAR"
        if spec.kind != "list":
            ok, v = _scalar(spec, t)
            oks.append(ok)
            values.append(f"{v} as {_ident(name)}")
            continue
        # a list of structs: parsed once into a list of structs of JSON texts; the items'
        # JSON types (object or null, nested structs too) come from json_type over the list
        assert spec.item is not None
        lst = f"l{len(lists)}"
        lists.append(f"json_transform({t}, {_q(json.dumps([_shape(spec.item)]))}) as {lst}")
        item_type = fs.columns[name].removesuffix("[]")
        item_ok, item_v = _item(spec.item, "x", item_type)
        types = [f"json_type({t}, '$[*]')"]
        types += [
            f"json_type({t}, {_q('$[*].' + sub_name)})"
            for sub_name, sub in spec.item.fields
            if sub.kind == "struct"
        ]
        oks.append(
            f"({t} is null or (starts_with({t}, '[') and "
            + " and ".join(f"list_has_all(['OBJECT', 'NULL'], {ty})" for ty in types)
            + f" and coalesce(list_bool_and(list_transform({lst}, lambda x: {item_ok})), true)))"
        )
        values.append(
            f"case when {t} is null then null else "
            f"list_transform({lst}, lambda x: {item_v})::{fs.columns[name]} end as {_ident(name)}"
        )
    oks += [f"{_ident(n)} is not null" for n in fs.required if n != "payload"]
    payload = ""
    if webhook:
        shape = _q(json.dumps(dict.fromkeys(inner.values(), "JSON")))
        payload = f", json_transform(o.payload, {shape}) as p"
    return (
        "with a as (select n, json_transform(line, "
        + _q(json.dumps(dict.fromkeys(top, "JSON")))
        + ") as o from _lines where json_valid(line)),\n"
        f"b as (select *{payload} from a),\n"
        f"c as (select *{''.join(', ' + x for x in lists)} from b),\n"
        "d as (select c.*, " + ", ".join(values) + " from c)\n"
        "select n, coalesce("
        + " and ".join(oks)
        + ", false) as ok, "
        + ", ".join(_ident(n) for n in fs.columns if not (webhook and n == "payload"))
        + " from d"
    )


def _field_type(struct_sql: str, name: str) -> str:
    """The DuckDB type of field `name` in `struct(...)`."""
    inner = struct_sql.strip()
    inner = inner[inner.index("(") + 1 : inner.rindex(")")]
    for part in _split_top(inner):
        field, _, kind = part.strip().partition(" ")
        if field.strip('"') == name:
            return kind.strip()
    raise KeyError(name)


# -- the Python half: which lines SQL may convert, and their `_extra` -----------------------------

# A number with an exponent: orjson writes one as `1e+16` or `1e-7` (never without the sign), which
# the reference's exact writer (Decimal) spells otherwise. The substring test is fast; the
# regex only confirms the lines that have one (in a UUID, say).
_EXPONENT_RE = re.compile(rb"[:,\[]-?[0-9]+(?:\.[0-9]+)?e[-+]")


def _candidate(body: bytes) -> Any:
    """The parsed line when SQL may convert it (see the module's docstring), else None."""
    if body[:1] != b"{" or b"\\u" in body:
        return None
    if (b"e-" in body or b"e+" in body) and _EXPONENT_RE.search(body):
        return None
    try:
        obj = orjson.loads(body)
        return obj if orjson.dumps(obj) == body else None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return None


@cache
def _extra_plan(raw_table: str) -> tuple[frozenset[str], tuple[tuple[str, Spec], ...]]:
    """(known top-level keys, columns whose nested objects keep unknown fields in `_extra`)."""
    fs = FILE_SOURCE_BY_TABLE[raw_table]
    if fs.raw_table == "returns_saas_webhooks":  # the payload is kept whole
        return frozenset((*WEBHOOK_ENVELOPE, "payload")), ()
    specs = {name: parse_type(kind) for name, kind in fs.columns.items()}
    nested = tuple((n, s) for n, s in specs.items() if s.kind in ("struct", "list"))
    return frozenset(specs), nested


def _walk(value: Any, spec: Spec, path: Any, extra: dict) -> None:
    """Unknown fields of nested objects, as RowConverter collects them (values.convert)."""
    if spec.kind == "struct" and type(value) is dict:
        known = {name for name, _ in spec.fields}
        for name, sub in spec.fields:
            if sub.kind in ("struct", "list"):
                _walk(value.get(name), sub, (path, name), extra)
        if not known.issuperset(value):
            extra[render(path)] = {k: v for k, v in value.items() if k not in known}
    elif spec.kind == "list" and type(value) is list:
        assert spec.item is not None
        for i, item in enumerate(value):
            _walk(item, spec.item, (path, i), extra)


def _python_parts(obj: dict, raw_table: str) -> tuple[str | None, str | None] | None:
    """(`_extra`, webhook `payload`) texts of a parsed line as the reference writes them, or
    None when the reference must decide: a webhook payload that is not an object, a top-level
    unknown key that could be a nested path (the reference's dict would merge the two)."""
    known, nested = _extra_plan(raw_table)
    payload = None
    if raw_table == "returns_saas_webhooks":
        inner = obj.get("payload")
        if type(inner) is not dict:
            return None
        payload = orjson.dumps(inner).decode() if inner else None
    extra: dict = {}
    if not known.issuperset(obj):
        extra = {k: v for k, v in obj.items() if k not in known}
        if any("[" in k or "." in k for k in extra):
            return None
    for name, spec in nested:
        _walk(obj.get(name), spec, name, extra)
    return (orjson.dumps(extra).decode() if extra else None), payload


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
            parts: dict[int, tuple[str | None, str | None]] = {}
            refs: dict[int, bytes] = {}
            for n, line in pending:
                body = line[:-1] if line.endswith(b"\n") else line
                obj = None if wide else _candidate(body)
                part = None if obj is None else _python_parts(obj, fs.raw_table)
                if part is not None:
                    parts[n] = part
                    numbers.append(n)
                    bodies.append(body)
                else:
                    refs[n] = line
            if numbers:
                _lines = pa.table(
                    {
                        "n": pa.array(numbers, pa.int64()),
                        "line": pa.array(bodies, pa.binary()).cast(pa.string()),
                    }
                )
                out = con.sql(sql).to_arrow_table()
                del _lines
                good = pc.filter(out, out.column("ok"))
                landed = set(good.column("n").to_pylist())
                for n, body in zip(numbers, bodies, strict=True):
                    if n not in landed:  # a line SQL declined (or that DuckDB does not read)
                        refs[n] = body + b"\n"
                if good.num_rows:
                    size = good.num_rows
                    texts = [parts[n] for n in good.column("n").to_pylist()]
                    python = {
                        "_extra": pa.array([x for x, _ in texts], pa.string()),
                        "payload": pa.array([y for _, y in texts], pa.string()),
                    }
                    table = pa.Table.from_arrays(
                        [
                            pa.array([rel] * size, pa.string()),
                            pa.array([sha256] * size, pa.string()),
                            good.column("n"),
                            pa.array([ingested_at] * size, schema.field("_ingested_at").type),
                            python["_extra"],
                            *(
                                python["payload"] if name == "payload" else good.column(name)
                                for name in fs.columns
                            ),
                        ],
                        names=schema.names,
                    )
                    insert(table)
                    rows += size
                    in_sql += size
            good_rows: list[tuple] = []
            dead: list[DeadLetter] = []
            for n in sorted(refs):
                converted = convert(n, refs[n])
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
