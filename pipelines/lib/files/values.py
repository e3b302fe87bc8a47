"""Typed values from JSON (NDJSON readers) with a clear reason for every value that is refused.

Money is exact: JSON is parsed with `parse_float=Decimal`, decimal strings are parsed as
`Decimal`, and a value is rounded half-even to the column's scale only when it has more places.
Times are ISO-8601 with `Z` or an offset, naive (taken as UTC) or date-only; all become UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pipelines.lib.coltypes import Spec

_INT_RE = re.compile(r"\s*[+-]?\d+\s*")
_DEC_RE = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*")
_INT_RANGE = {"bigint": 2**63, "integer": 2**31}


class Problems:
    """Collects the reasons a record is refused; nested unknown fields go to `extra`."""

    __slots__ = ("errors", "extra")

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.extra: dict[str, Any] = {}


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        bool: "a boolean",
        str: "a string",
        int: "a number",
        Decimal: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


FieldPath = str | tuple  # a field path, built lazily: (parent, "name") or (parent, index)


def render(path: FieldPath) -> str:
    """`(("refund_line_items", 0), "subtotal")` -> `refund_line_items[0].subtotal`."""
    if isinstance(path, str):
        return path
    parent, key = path
    head = render(parent)
    if isinstance(key, int):
        return f"{head}[{key}]"
    return f"{head}.{key}" if head else key


def convert(
    value: Any, spec: Spec, path: FieldPath, problems: Problems, keep_extra: bool = True
) -> Any:
    """`value` as the Python value for `spec`; None (and a reason in `problems`) when refused."""
    if value is None:
        return None
    kind = spec.kind
    try:
        if kind == "varchar":
            if isinstance(value, str):
                return value
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                return str(value)
        elif kind in _INT_RANGE:
            number: int | None = None
            if isinstance(value, int) and not isinstance(value, bool):
                number = value
            elif (isinstance(value, str) and _INT_RE.fullmatch(value)) or (
                isinstance(value, Decimal) and value == value.to_integral_value()
            ):
                # the range first: int() of `1e999999999` would build a billion-digit integer
                if not -_INT_RANGE[kind] <= Decimal(value) < _INT_RANGE[kind]:
                    shown = _show(str(value).strip())
                    problems.errors.append(f"integer out of range in {render(path)!r}: {shown}")
                    return None
                number = int(value)
            elif isinstance(value, str | Decimal):
                problems.errors.append(f"bad integer in {render(path)!r}: {_show(str(value))}")
                return None
            if number is not None:
                if not -_INT_RANGE[kind] <= number < _INT_RANGE[kind]:
                    problems.errors.append(f"integer out of range in {render(path)!r}: {number}")
                    return None
                return number
        elif kind == "decimal":
            return _decimal(value, spec, path, problems)
        elif kind == "timestamptz":
            if isinstance(value, str):
                parsed = parse_time(value)
                if parsed is None:
                    problems.errors.append(time_problem(value, path))
                return parsed
        elif kind == "date":
            if isinstance(value, str):
                try:
                    return date.fromisoformat(value.strip()[:10])
                except ValueError:
                    problems.errors.append(f"bad date in {render(path)!r}: {_show(value)}")
                    return None
        elif kind == "json":
            return dumps(value)
        elif kind == "struct":
            if isinstance(value, dict):
                out = {}
                for name, sub in spec.fields:
                    out[name] = convert(value.get(name), sub, (path, name), problems, keep_extra)
                if keep_extra:
                    known = {name for name, _ in spec.fields}
                    unknown = {k: v for k, v in value.items() if k not in known}
                    if unknown:
                        problems.extra[render(path)] = unknown
                return out
        elif kind == "list":
            if isinstance(value, list):
                assert spec.item is not None
                return [
                    convert(item, spec.item, (path, i), problems, keep_extra)
                    for i, item in enumerate(value)
                ]
        elif kind == "boolean":
            if isinstance(value, bool):
                return value
        elif kind == "double" and isinstance(value, int | Decimal) and not isinstance(value, bool):
            return float(value)
    except (ValueError, ArithmeticError) as exc:  # defensive: a value never stops a run
        problems.errors.append(f"bad value in {render(path)!r}: {type(exc).__name__}: {exc}")
        return None
    expected = {"struct": "an object", "list": "a list"}.get(kind, kind)
    got = _type_name(value)
    problems.errors.append(f"wrong type in {render(path)!r}: expected {expected}, got {got}")
    return None


def _decimal(value: Any, spec: Spec, path: FieldPath, problems: Problems) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        got = _type_name(value)
        problems.errors.append(f"wrong type in {render(path)!r}: expected a decimal, got {got}")
        return None
    if isinstance(value, str):
        if not _DEC_RE.fullmatch(value):
            problems.errors.append(f"bad number in {render(path)!r}: {_show(value)}")
            return None
        value = Decimal(value.strip())
    number = Decimal(value)
    if not number.is_finite():
        problems.errors.append(f"bad number in {render(path)!r}: {_show(str(value))}")
        return None
    bound = Decimal(10) ** (spec.precision - spec.scale)
    # comparisons, not abs(): abs() applies the context, which overflows on `1e999999999`
    if -bound < number < bound:  # else quantize could exceed the context's 28 digits and raise
        number = number.quantize(Decimal(1).scaleb(-spec.scale), rounding=ROUND_HALF_EVEN)
    if not -bound < number < bound:
        problems.errors.append(f"number out of range in {render(path)!r}: {_show(str(value))}")
        return None
    return number


Converter = Callable[[Any, FieldPath, Problems], Any]


def compile_converter(spec: Spec, keep_extra: bool = True) -> Converter:
    """A converter for `spec` with fast paths for the usual JSON types; anything else goes
    through `convert`, which knows every reason to refuse a value."""

    def slow(value: Any, path: FieldPath, problems: Problems) -> Any:
        return convert(value, spec, path, problems, keep_extra)

    kind = spec.kind
    if kind == "varchar":

        def varchar(value: Any, path: FieldPath, problems: Problems) -> Any:
            return value if value is None or type(value) is str else slow(value, path, problems)

        return varchar
    if kind in _INT_RANGE:
        low, high = -_INT_RANGE[kind], _INT_RANGE[kind]

        def integer(value: Any, path: FieldPath, problems: Problems) -> Any:
            if value is None or (type(value) is int and low <= value < high):
                return value
            return slow(value, path, problems)

        return integer
    if kind == "decimal":
        quantum = Decimal(1).scaleb(-spec.scale)
        bound = Decimal(10) ** (spec.precision - spec.scale)

        def decimal(value: Any, path: FieldPath, problems: Problems) -> Any:
            if value is None:
                return None
            if type(value) is str and len(value) < 28 and _DEC_RE.fullmatch(value):
                number = Decimal(value)
                if -bound < number < bound:
                    number = number.quantize(quantum, rounding=ROUND_HALF_EVEN)
                    if -bound < number < bound:
                        return number
            return _decimal(value, spec, path, problems)

        return decimal
    if kind == "timestamptz":

        def timestamptz(value: Any, path: FieldPath, problems: Problems) -> Any:
            if value is None:
                return None
            if type(value) is str:
                parsed = parse_time(value)
                if parsed is None:
                    problems.errors.append(time_problem(value, path))
                return parsed
            return slow(value, path, problems)

        return timestamptz
    if kind == "struct":
        fields = [(name, compile_converter(sub, keep_extra)) for name, sub in spec.fields]
        known = frozenset(name for name, _ in spec.fields)

        def struct(value: Any, path: FieldPath, problems: Problems) -> Any:
            if value is None:
                return None
            if type(value) is not dict:
                return slow(value, path, problems)
            out = {name: conv(value.get(name), (path, name), problems) for name, conv in fields}
            if keep_extra and not known.issuperset(value):
                unknown = {k: v for k, v in value.items() if k not in known}
                problems.extra[render(path)] = unknown
            return out

        return struct
    if kind == "list":
        assert spec.item is not None
        item = compile_converter(spec.item, keep_extra)

        def array(value: Any, path: FieldPath, problems: Problems) -> Any:
            if value is None:
                return None
            if type(value) is not list:
                return slow(value, path, problems)
            return [item(v, (path, i), problems) for i, v in enumerate(value)]

        return array
    return slow


def parse_time(text: str) -> datetime | None:
    """ISO-8601 with `Z` or an offset, naive (UTC) or date-only -> an aware UTC datetime; None
    when the text is no such time or its UTC time is outside years 1-9999 (`time_problem` says
    which)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        return None


def time_problem(text: str, path: FieldPath) -> str:
    """The reason `parse_time(text)` refused a time (only asked when it did)."""
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return f"bad time in {render(path)!r}: {_show(text)}"
    return f"time out of range in {render(path)!r}: {_show(text)} (not in years 1-9999 in UTC)"


_MARK = "\x00dec:"
_MARK_RE = re.compile(r'"\\u0000dec:([^"]*)"')


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _MARK + str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> str:
    """JSON text of a value parsed with `parse_float=Decimal`: numbers stay numbers, exactly."""
    text = json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))
    if _MARK[1:] in text:
        text = _MARK_RE.sub(r"\1", text)
    return text
