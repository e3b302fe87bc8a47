"""The landing-boundary expectation suites, one per raw file table (DESIGN §3 "Validation").

Each suite validates the rows of the files landed in one run. A suite is made of frames: a SQL
projection of the raw table (line items and transactions are unnested into their own frame) and
the expectations on it. Frames select only keys, positions and the checked columns, never
personal data (payload, customer, names, emails, notes), so a failing-row sample is safe to show.

The suites are built from the source registry (`pipelines/lib/contracts.py`): each file source's
entry names its required columns, value sets, ranges and checked list columns, and `suite_for`
turns them into frames; a new source needs no code here.

Rules here guard the landing boundary only: required fields present, codes in their value sets,
quantities and money in range. Cross-source rules (uniqueness per key, relationships) are dbt
tests on staging; a rule is written in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Value sets live with their source in the registry (pipelines/lib/contracts.py); re-exported.
from pipelines.lib.contracts import (  # noqa: F401
    AMAZON_RETURN_REQUEST_STATUSES,
    B2B_STATUSES,
    CHANNELS,
    FILE_SOURCES,
    RETURN_OUTCOMES,
    RETURN_STATES,
    SHOPIFY_TRANSACTION_KINDS,
    SHOPIFY_TRANSACTION_STATUSES,
    WEBHOOK_TOPICS,
    FileSource,
    Items,
)

# Columns that may hold personal data: never selected into a frame, never shown in a sample.
PERSONAL_COLUMNS = frozenset(
    {"payload", "customer", "name", "email", "note", "first_name", "last_name", "address", "phone"}
)

# Every frame carries these, so a failing row can be found (file, row) without showing its data.
KEY_COLUMNS = ("_file", "_row_number")


@dataclass(frozen=True)
class Expectation:
    type: str  # Great Expectations expectation class name
    column: str
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    name: str
    sql: str  # selects from raw.<table> aliased `r`; `{batch}` is the landed-files filter
    expectations: tuple[Expectation, ...]


def not_null(*columns: str) -> tuple[Expectation, ...]:
    return tuple(Expectation("ExpectColumnValuesToNotBeNull", c) for c in columns)


def in_set(column: str, values: tuple[str, ...]) -> Expectation:
    return Expectation("ExpectColumnValuesToBeInSet", column, {"value_set": list(values)})


def positive(column: str) -> Expectation:
    return Expectation(
        "ExpectColumnValuesToBeBetween", column, {"min_value": 0, "strict_min": True}
    )


def non_negative(column: str) -> Expectation:
    return Expectation("ExpectColumnValuesToBeBetween", column, {"min_value": 0})


def _frame(name: str, table: str, columns: str, expectations, unnest: str | None = None) -> Frame:
    keys = "r._file, r._row_number"
    if unnest:
        sql = (
            f"select {keys}, {columns} from raw.{table} r, "
            f"unnest(r.{unnest}) as u(item) where {{batch}}"
        )
    else:
        sql = f"select {keys}, {columns} from raw.{table} r where {{batch}}"
    return Frame(name, sql, tuple(expectations))


def _money(expr: str, alias: str) -> str:
    # validation reads money as double: a range check needs no exactness, pandas handles it natively
    return f"cast({expr} as double) as {alias}"


def _alias(expr: str) -> tuple[str, str]:
    """`col` -> (col, col); `col as x` -> (col, x)."""
    name, _, alias = expr.partition(" as ")
    return name, alias or name


def _is_decimal(kind: str, name: str) -> bool:
    """Is `name` a decimal, in a column type or in a struct type's fields?"""
    return re.search(rf"(^|[(, ]){re.escape(name)} decimal\(", kind) is not None or (
        name == "" and kind.startswith("decimal(")
    )


def _checks(sets: dict, above_zero: tuple, at_least_zero: tuple) -> list[Expectation]:
    checks = [in_set(c, tuple(v)) for c, v in sets.items()]
    return checks + [positive(c) for c in above_zero] + [non_negative(c) for c in at_least_zero]


def suite_for(fs: FileSource) -> tuple[Frame, ...]:
    """The suite of one file source, from its registry entry: the main frame (not-null, value
    sets, ranges) and one frame per checked list column. Decimals are read as double."""
    table = fs.raw_table
    not_nulls = (*fs.not_null, *(c for c in fs.required if c not in fs.not_null))
    checked = {*not_nulls, *fs.value_sets, *fs.positive, *fs.non_negative}
    cols = [c for c in fs.columns if c in checked]
    if PERSONAL_COLUMNS & {
        *cols,
        *(_alias(e)[0] for it in fs.items for e in it.parent + it.fields),
    }:
        raise ValueError(f"{table}: a suite never reads personal data ({sorted(PERSONAL_COLUMNS)})")
    select = ", ".join(
        _money(f"r.{c}", c) if _is_decimal(fs.columns[c], "") else f"r.{c}" for c in cols
    )
    frames = [
        _frame(
            fs.frame or table,
            table,
            select,
            [*not_null(*not_nulls), *_checks(fs.value_sets, fs.positive, fs.non_negative)],
        )
    ]
    for it in fs.items:
        kind = fs.columns[it.column]
        parts = [f"r.{name}" + (f" as {alias}" if alias != name else "") for name, alias in
                 map(_alias, it.parent)]  # fmt: skip
        for expr in it.fields:
            name, alias = _alias(expr)
            if _is_decimal(kind, name):
                parts.append(_money(f"item.{name}", alias))
            else:
                parts.append(f"item.{name}" + (f" as {alias}" if alias != name else ""))
        frames.append(
            _frame(
                it.frame,
                table,
                ", ".join(parts),
                _checks(it.value_sets, it.positive, it.non_negative),
                unnest=it.column,
            )
        )
    return tuple(frames)


# one suite per raw file table, built from the source registry
SUITES: dict[str, tuple[Frame, ...]] = {fs.raw_table: suite_for(fs) for fs in FILE_SOURCES}
