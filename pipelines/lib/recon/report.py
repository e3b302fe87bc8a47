"""Formatting mismatches for people: CSV, Markdown and JSON (DESIGN §5, "The report").

Only the columns of `lifecycle.REPORT_COLUMNS` are ever formatted: rule, RMA, product, warehouse,
quantities and amounts. No customer data exists in `recon.mismatches`, so none can leak here.
CSV is written by the one spreadsheet-safe writer, `pipelines.lib.csvsafe` (DESIGN §11).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from pipelines.lib.csvsafe import rows_to_csv
from pipelines.lib.recon.catalog import CATALOG, Rule
from pipelines.lib.recon.lifecycle import REPORT_COLUMNS

FORMATS: tuple[str, ...] = ("csv", "md", "json")

# the worst rows of a rule, as the Dagster checks show them
CHECK_COLUMNS: tuple[str, ...] = (
    "rma_number",
    "sku",
    "warehouse",
    "location",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
    "first_seen_at",
    "status",
)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def to_csv(rows: Iterable[dict], columns: Sequence[str] = REPORT_COLUMNS) -> str:
    """Spreadsheet-safe CSV (`pipelines.lib.csvsafe`): a text cell that a spreadsheet would run
    as a formula (a SKU `=HYPERLINK(...)` from a B2B file) starts with `'`; numbers stay."""
    return rows_to_csv(columns, ([_text(row.get(c)) for c in columns] for row in rows))


def _md_cell(value: object) -> str:
    return _text(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Iterable[dict], columns: Sequence[str] = REPORT_COLUMNS) -> str:
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_json(rows: Iterable[dict], columns: Sequence[str] = REPORT_COLUMNS) -> str:
    """JSON array; money and quantities as exact decimal strings, times as ISO-8601."""
    data = [
        {c: (None if row.get(c) is None else _text(row.get(c))) for c in columns} for row in rows
    ]
    return json.dumps(data, indent=2) + "\n"


def render(rows: Sequence[dict], fmt: str, columns: Sequence[str] = REPORT_COLUMNS) -> str:
    if fmt == "csv":
        return to_csv(rows, columns)
    if fmt == "md":
        return to_markdown(rows, columns)
    if fmt == "json":
        return to_json(rows, columns)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def amount_at_risk(rows: Iterable[dict]) -> Decimal:
    """Sum of |amount_delta| (money rules: the refund/credit gap; stock rules: the value of the
    quantity gap at the line's unit price)."""
    return sum(
        (abs(Decimal(r["amount_delta"])) for r in rows if r.get("amount_delta") is not None),
        Decimal(0),
    )


def rule_summary(rows: Sequence[dict], catalog: tuple[Rule, ...] = CATALOG) -> list[dict]:
    """One entry per rule of the catalog, in its order: severity, count, amount at risk and the
    rule's description."""
    summary = []
    for entry in catalog:
        mine = [r for r in rows if r["rule"] == entry.rule]
        summary.append(
            {
                "rule": entry.rule,
                "severity": entry.severity,
                "count": len(mine),
                "amount_at_risk": amount_at_risk(mine),
                "description": entry.description,
            }
        )
    return summary
