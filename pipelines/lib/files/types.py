"""DuckDB type names of the contracts, parsed into a small spec the readers walk.

`contracts.py` declares raw columns as DuckDB type strings, including nested
`struct(...)[]` lists. The NDJSON readers convert each JSON value against the parsed spec and build
Arrow arrays of the matching Arrow type, so a batch is inserted into DuckDB in one bulk statement.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Spec:
    kind: str  # varchar, bigint, integer, double, boolean, date, timestamptz, json, decimal,
    #            struct, list
    precision: int = 0  # decimal only
    scale: int = 0  # decimal only
    fields: tuple[tuple[str, Spec], ...] = ()  # struct only
    item: Spec | None = None  # list only


_SCALARS = {
    "varchar": pa.string(),
    "json": pa.string(),  # DuckDB casts the text to json on insert
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def parse_type(text: str) -> Spec:
    """Parse a DuckDB type name such as `struct(id bigint, price decimal(18,4))[]`."""
    spec, rest = _parse(text.strip())
    if rest.strip():
        raise ValueError(f"cannot parse DuckDB type {text!r}: trailing {rest!r}")
    return spec


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


def arrow_type(spec: Spec) -> pa.DataType:
    if spec.kind == "decimal":
        return pa.decimal128(spec.precision, spec.scale)
    if spec.kind == "struct":
        return pa.struct([(name, arrow_type(s)) for name, s in spec.fields])
    if spec.kind == "list":
        assert spec.item is not None
        return pa.list_(arrow_type(spec.item))
    return _SCALARS[spec.kind]


def arrow_schema(columns: dict[str, str]) -> pa.Schema:
    return pa.schema([(name, arrow_type(parse_type(kind))) for name, kind in columns.items()])
