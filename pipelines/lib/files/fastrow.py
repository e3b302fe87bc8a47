"""The fast path of the NDJSON readers: a row builder generated per source.

`RowConverter` (ndjson.py) is the reference: it knows every reason to refuse a value and says
it. Most lines need none of that, so `compile_builder(fs)` generates (once per source) a plain
Python function that converts a parsed line straight into the row's values, with the
type checks inlined and no paths, no `Problems`, no per-field calls. It accepts only what it is
sure the reference converts the same way; on anything else (a wrong or unusual type, a missing
required field, a bad time, a number out of range) it raises `Slow`, and the line goes through
the reference path, which lands it or dead-letters it with its reason exactly as before.

The line is parsed once, by the same `json.loads(parse_float=Decimal)` as the reference, and
the builder writes kept text (unknown fields for `_extra`, the webhook payload) with the same
function the reference would use for that line (`values.dumps` when the line has a JSON float,
orjson otherwise), so what it produces is the reference's output by construction; a JSON float
in a typed field (a Decimal here) is left to the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any

from pipelines.lib.coltypes import Spec, parse_type
from pipelines.lib.contracts import FileSource
from pipelines.lib.files.values import _DEC_RE, _INT_RANGE, dumps, parse_time, render

WEBHOOK_ENVELOPE = ("webhook_id", "topic", "delivered_at")
WEBHOOK_PAYLOAD_KEYS = {"return_id": "id"}  # column -> payload key


class Slow(Exception):
    """The line needs the reference converter."""


try:
    import orjson

    def fast_dumps(value: Any) -> str:
        """The reference's `_fast_dumps`: orjson, `values.dumps` for what orjson refuses."""
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # e.g. an integer beyond 64 bits
            return dumps(value)

except ImportError:  # pragma: no cover - orjson comes with dagster-dbt
    fast_dumps = dumps


class _Gen:
    """Emits Python source for one source's builder and its struct helpers."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "Slow": Slow,
            "_D": Decimal,
            "_HALF_EVEN": ROUND_HALF_EVEN,
            "_dec_re": _DEC_RE.fullmatch,
            "_parse_time": parse_time,
            "_date": date.fromisoformat,
            "_dumps": dumps,
            "_render": render,
        }
        self.helpers: list[str] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value: Any, prefix: str = "_k") -> str:
        name = self.name(prefix)
        self.env[name] = value
        return name

    def convert(self, var: str, spec: Spec, path: str, keep_extra: bool, pad: str) -> list[str]:
        """Statements that replace `var` (a raw JSON value, maybe None) by its converted value
        or raise Slow. `path` is an expression for the value's FieldPath (for `_extra` keys)."""
        kind = spec.kind
        if kind == "varchar":
            return [f"{pad}if {var} is not None and type({var}) is not str: raise Slow"]
        if kind in _INT_RANGE:
            low, high = -_INT_RANGE[kind], _INT_RANGE[kind]
            return [
                f"{pad}if {var} is not None and (type({var}) is not int "
                f"or not {low} <= {var} < {high}): raise Slow"
            ]
        if kind == "decimal":
            quantum = self.const(Decimal(1).scaleb(-spec.scale), "_q")
            bound = self.const(Decimal(10) ** (spec.precision - spec.scale), "_b")
            return [
                f"{pad}if {var} is not None:",
                f"{pad}    if type({var}) is str and len({var}) < 28 and _dec_re({var}):",
                f"{pad}        {var} = _D({var})",
                f"{pad}    elif type({var}) is int:",
                f"{pad}        {var} = _D({var})",
                f"{pad}    else: raise Slow",
                f"{pad}    if not -{bound} < {var} < {bound}: raise Slow",
                f"{pad}    {var} = {var}.quantize({quantum}, rounding=_HALF_EVEN)",
                f"{pad}    if not -{bound} < {var} < {bound}: raise Slow",
            ]
        if kind == "timestamptz":
            return [
                f"{pad}if {var} is not None:",
                f"{pad}    if type({var}) is not str: raise Slow",
                f"{pad}    {var} = _parse_time({var})",
                f"{pad}    if {var} is None: raise Slow",
            ]
        if kind == "date":
            return [
                f"{pad}if {var} is not None:",
                f"{pad}    if type({var}) is not str: raise Slow",
                f"{pad}    {var} = _date({var}.strip()[:10])",  # ValueError: the caller's Slow
            ]
        if kind == "json":
            return [
                f"{pad}if {var} is not None:",
                f"{pad}    {var} = _dumps({var})",
            ]
        if kind == "boolean":
            return [f"{pad}if {var} is not None and type({var}) is not bool: raise Slow"]
        if kind == "double":
            return [
                f"{pad}if {var} is not None:",
                f"{pad}    if type({var}) is not int: raise Slow",
                f"{pad}    {var} = float({var})",
            ]
        if kind == "struct":
            helper = self.struct(spec, keep_extra)
            return [f"{pad}if {var} is not None: {var} = {helper}({var}, {path}, extra)"]
        if kind == "list":
            assert spec.item is not None
            item = self.item(spec.item, keep_extra)
            return [
                f"{pad}if {var} is not None:",
                f"{pad}    if type({var}) is not list: raise Slow",
                f"{pad}    {var} = [{item}(x, ({path}, i), extra) for i, x in enumerate({var})]",
            ]
        raise ValueError(f"no fast conversion for {kind}")  # pragma: no cover

    def item(self, spec: Spec, keep_extra: bool) -> str:
        """A helper `(value, path, extra) -> converted` for list items."""
        if spec.kind == "struct":
            return self.struct(spec, keep_extra)
        name = self.name("_item")
        body = self.convert("v", spec, "path", keep_extra, "    ")
        self.helpers.append("\n".join([f"def {name}(v, path, extra):", *body, "    return v"]))
        return name

    def struct(self, spec: Spec, keep_extra: bool) -> str:
        name = self.name("_struct")
        known = self.const(frozenset(field for field, _ in spec.fields), "_known")
        lines = [f"def {name}(v, path, extra):", "    if type(v) is not dict: raise Slow"]
        out = []
        for i, (field, sub) in enumerate(spec.fields):
            var = f"f{i}"
            lines.append(f"    {var} = v.get({field!r})")
            lines += self.convert(var, sub, f"(path, {field!r})", keep_extra, "    ")
            out.append(f"{field!r}: {var}")
        if keep_extra:
            lines += [
                f"    if not {known}.issuperset(v):",
                f"        unknown = {{k: x for k, x in v.items() if k not in {known}}}",
                "        extra[_render(path)] = unknown",
            ]
        lines.append(f"    return {{{', '.join(out)}}}")
        self.helpers.append("\n".join(lines))
        return name


def compile_builder(fs: FileSource, exact_numbers: bool = False) -> Callable[[dict], tuple]:
    """`build(obj) -> (extra, *contract values)` for one source's line parsed by
    `json.loads(parse_float=Decimal)`, raising `Slow` (or any error) when the reference
    converter must decide. Kept text is written by orjson, or by `values.dumps` with
    `exact_numbers=True` (for a line that has JSON floats: real Shopify refunds do, in
    `tax_lines[].rate`), as the reference does. Compiled once per source."""
    return _compile(fs.raw_table, tuple(fs.columns.items()), fs.required, exact_numbers)


@cache
def _compile(
    raw_table: str,
    column_items: tuple[tuple[str, str], ...],
    required: tuple[str, ...],
    exact_numbers: bool,
) -> Callable[[dict], tuple]:
    fs = FileSource("", raw_table, "", dict(column_items), required)
    gen = _Gen()
    webhook = fs.raw_table == "returns_saas_webhooks"
    specs = {name: parse_type(kind) for name, kind in fs.columns.items()}
    known = frozenset((*WEBHOOK_ENVELOPE, "payload")) if webhook else frozenset(specs)
    known_name = gen.const(known, "_known_top")
    body = ["def build(obj):", "    extra = {}"]
    if webhook:
        body += ["    p = obj.get('payload')", "    if type(p) is not dict: raise Slow"]
    values = []
    for i, (name, spec) in enumerate(specs.items()):
        var = f"c{i}"
        values.append(var)
        if webhook and name == "payload":
            body.append(f"    {var} = _fdumps(p) if p else None")
            continue
        if webhook and name not in WEBHOOK_ENVELOPE:
            key = WEBHOOK_PAYLOAD_KEYS.get(name, name)
            body.append(f"    {var} = p.get({key!r})")
            body += gen.convert(var, spec, repr(("payload", key)), False, "    ")
        else:
            body.append(f"    {var} = obj.get({name!r})")
            body += gen.convert(var, spec, repr(name), True, "    ")
        if name in fs.required:
            body.append(f"    if {var} is None: raise Slow")
    body += [
        f"    if not {known_name}.issuperset(obj):",
        f"        top = {{k: x for k, x in obj.items() if k not in {known_name}}}",
        "        top.update(extra)",
        "        extra = top",
        f"    return (_fdumps(extra) if extra else None, {', '.join(values)})",
    ]
    gen.env["_fdumps"] = dumps if exact_numbers else fast_dumps
    source = "\n\n".join([*gen.helpers, "\n".join(body)]) + "\n"
    namespace = dict(gen.env)
    exec(
        compile(source, f"<fastrow {fs.raw_table}>", "exec"), namespace
    )  # the code is generated here, from contracts
    build = namespace["build"]
    build.source = source  # for debugging: print(compile_builder(fs).source)
    return build
