"""Column types: the one map from DuckDB type names to Arrow types.

`contracts.py` (and the `meta` tables of `migrations.py`) declare columns as DuckDB type names,
including nested `struct(...)[]` lists. Every writer that hands DuckDB an Arrow table builds its
Arrow types here: the CDC landing (`cdc/land.py`), the ERP pull (`erp/pull.py`) and the NDJSON
file readers (`files/ndjson.py`, which with `files/fastrow.py` and `files/values.py` also walk the
parsed `Spec` to convert values). Arrow's type for a column is the one DuckDB reports for it, so
an appended table needs no cast (`tests/test_coltypes.py` checks every raw table).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa


@dataclass(frozen=True)
class Spec:
    """A parsed DuckDB type name."""

    kind: str  # a key of _SCALARS, or decimal, struct, list
    precision: int = 0  # decimal only
    scale: int = 0  # decimal only
    fields: tuple[tuple[str, Spec], ...] = ()  # struct only
    item: Spec | None = None  # list only


_SCALARS = {
    "varchar": pa.string(),
    "json": pa.string(),  # DuckDB casts the text to json on insert (and exports json as text)
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),  # without time zone: UTC by convention
    "timestamptz": pa.timestamp("us", tz="UTC"),
}

_DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def decimal_type(kind: str) -> tuple[int, int] | None:
    """(precision, scale) of a `decimal(p,s)` column type, else None."""
    m = _DECIMAL_RE.match(kind)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_type(text: str) -> Spec:
    """Parse a DuckDB type name such as `struct(id bigint, price decimal(18,4))[]`."""
    spec, rest = _parse(text.strip())
    if rest.strip():
        raise ValueError(f"cannot parse DuckDB type {text!r}: trailing {rest!r}")
    return spec


@lru_cache(maxsize=256)
def arrow_type(kind: str) -> pa.DataType:
    """The Arrow type of a DuckDB type name (cached: callers may ask once per batch)."""
    return _spec_arrow_type(parse_type(kind))


def arrow_schema(columns: Mapping[str, str]) -> pa.Schema:
    """Column name -> DuckDB type name, as an Arrow schema in the same order."""
    return pa.schema([(name, arrow_type(kind)) for name, kind in columns.items()])


def _spec_arrow_type(spec: Spec) -> pa.DataType:
    if spec.kind == "decimal":
        return pa.decimal128(spec.precision, spec.scale)
    if spec.kind == "struct":
        return pa.struct([(name, _spec_arrow_type(s)) for name, s in spec.fields])
    if spec.kind == "list":
        assert spec.item is not None
        return pa.list_(_spec_arrow_type(spec.item))
    return _SCALARS[spec.kind]


def _parse(text: str) -> tuple[Spec, str]:
    text = text.lstrip()
    low = text.lower()
    if low.startswith("struct("):
        body, rest = _balanced(text[len("struct") :])
        fields = []
        for part in _split_top(body):
            name, _, kind = part.strip().partition(" ")
            spec, tail = _parse(kind)
            if tail.strip():
                raise ValueError(f"cannot parse struct field {part!r}")
            fields.append((name.strip('"'), spec))
        spec = Spec("struct", fields=tuple(fields))
    elif low.startswith("decimal("):
        body, rest = _balanced(text[len("decimal") :])
        precision, scale = (int(x) for x in body.split(","))
        spec = Spec("decimal", precision=precision, scale=scale)
    else:
        word = ""
        for ch in text:
            if not (ch.isalnum() or ch == "_"):
                break
            word += ch
        if word.lower() not in _SCALARS:
            raise ValueError(f"unsupported DuckDB type {text!r}")
        spec, rest = Spec(word.lower()), text[len(word) :]
    while rest.startswith("[]"):
        spec, rest = Spec("list", item=spec), rest[2:]
    return spec, rest


def _balanced(text: str) -> tuple[str, str]:
    """`(a, (b))rest` -> (`a, (b)`, `rest`)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return text[1:i], text[i + 1 :]
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts
