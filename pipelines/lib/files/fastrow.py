"""The fast path of the NDJSON readers: orjson and a row builder generated per source.

`RowConverter` (ndjson.py) is the reference: it knows every reason to refuse a value and says
it. Most lines need none of that, so `compile_builder(fs)` generates (once per source) a plain
Python function that converts a line parsed by orjson straight into the row's values, with the
type checks inlined and no paths, no `Problems`, no per-field calls. It accepts only what it is
sure the reference converts the same way; on anything else (a wrong or unusual type, a missing
required field, a bad time, a number out of range) it raises `Slow`, and the line goes through
the reference path, which lands it or dead-letters it with its reason exactly as before.

What orjson reads differently from `json.loads(parse_float=Decimal)` never lands through the
builder: orjson reads a JSON float, and an integer beyond 64 bits, as a Python float where the
reference keeps them exact, so the builder declines any float, whether in a typed field (no
contract type accepts one here) or in what is kept as text (unknown fields for `_extra`, the
webhook payload, `json` columns: `has_float`); and what orjson refuses (NaN, a BOM, lone
surrogates, invalid UTF-8, ...) goes to the reference, which decides as it always did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pipelines.lib.contracts import FileSource
from pipelines.lib.files.types import Spec, parse_type
from pipelines.lib.files.values import _DEC_RE, _INT_RANGE, dumps, parse_time, render

WEBHOOK_ENVELOPE = ("webhook_id", "topic", "delivered_at")
WEBHOOK_PAYLOAD_KEYS = {"return_id": "id"}  # column -> payload key


class Slow(Exception):
    """The line needs the reference converter."""


try:
    import orjson

    loads = orjson.loads

    def fast_dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

except ImportError:  # pragma: no cover - orjson comes with dagster-dbt
    loads = None
    fast_dumps = dumps


def has_float(value: Any) -> bool:
    """Whether a value parsed by orjson holds a float anywhere (its exact text is lost)."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        return any(has_float(v) for v in value.values())
    if kind is list:
        return any(has_float(v) for v in value)
    return False


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
            "_has_float": has_float,
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
                f"{pad}    if _has_float({var}): raise Slow",
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
        lines += [
            f"    if not {known}.issuperset(v):",
            f"        unknown = {{k: x for k, x in v.items() if k not in {known}}}",
            "        if _has_float(unknown): raise Slow",
        ]
        if keep_extra:
            lines.append("        extra[_render(path)] = unknown")
        lines.append(f"    return {{{', '.join(out)}}}")
        self.helpers.append("\n".join(lines))
        return name


def compile_builder(fs: FileSource, exact_numbers: bool = False) -> Callable[[dict], tuple]:
    """`build(obj) -> (extra, *contract values)` for one source's parsed line (a dict from
    orjson), raising `Slow` (or any error) when the reference converter must decide.

    `exact_numbers=True` builds for a line parsed by `json.loads(parse_float=Decimal)` that had
    JSON floats (real Shopify refunds do: `tax_lines[].rate`): the text kept for unknown fields
    and the payload is then written by `values.dumps`, as the reference does for such a line,
    and a float in a typed field (a Decimal here) is still left to the reference."""
    gen = _Gen()
    webhook = fs.raw_table == "returns_saas_webhooks"
    specs = {name: parse_type(kind) for name, kind in fs.columns.items()}
    known = frozenset((*WEBHOOK_ENVELOPE, "payload")) if webhook else frozenset(specs)
    known_name = gen.const(known, "_known_top")
    body = ["def build(obj):", "    extra = {}"]
    if webhook:
        inner = frozenset(
            WEBHOOK_PAYLOAD_KEYS.get(name, name)
            for name in specs
            if name not in (*WEBHOOK_ENVELOPE, "payload")
        )
        inner_name = gen.const(inner, "_known_payload")
        body += [
            "    p = obj.get('payload')",
            "    if type(p) is not dict: raise Slow",
            f"    if not {inner_name}.issuperset(p):",
            f"        if _has_float({{k: x for k, x in p.items() if k not in {inner_name}}}):",
            "            raise Slow",
        ]
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
        "        if _has_float(top): raise Slow",
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
