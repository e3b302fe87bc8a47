"""Reconciliation in Dagster: the mismatch lifecycle, one check per rule, and the report.

- `recon/mismatches` merges dbt's `recon/recon_mismatches_current` into the persistent history
  (pipelines/lib/recon/lifecycle.py) and carries one asset check per row of the rule catalog
  (dbt_project/seeds/rule_catalog.csv, read when the definitions load): it passes when the rule
  has no open mismatch; its metadata shows the count, the money and goods at risk per currency
  (numbers, so the UI plots them run over run) and the worst rows as a table.
- `recon/mismatch_report` is the open table with cases, currencies and actions (DESIGN §11):
  inline tables in its metadata and a CSV file under `<data_dir>/reports/`.
Only RMA numbers, products, warehouses, quantities and amounts are shown: no personal data.
"""

from decimal import Decimal

import dagster as dg

from pipelines.lib.recon.catalog import CATALOG
from pipelines.lib.stages import mark
from pipelines.resources import SettingsResource

CURRENT_KEY = dg.AssetKey(["recon", "recon_mismatches_current"])
MISMATCHES_KEY = dg.AssetKey(["recon", "mismatches"])
REPORT_KEY = dg.AssetKey(["recon", "mismatch_report"])
# planning (assets/writeback.py): each report row names its adjustment, so the report follows it
ADJUSTMENTS_KEY = dg.AssetKey(["writeback", "adjustments"])
OWNERS = ["team:finance-operations"]

WORST_ROWS = 10  # rows per check
REPORT_TABLE_ROWS = 200  # rows of the report's table metadata (the CSV has them all)

_NUMBER_COLUMNS = frozenset(
    {"amount_delta", "qty_delta", "money_at_risk", "goods_at_risk", "money_at_risk_company"}
)
_INT_COLUMNS = frozenset({"count", "cases", "rows"})


def _check_severity(severity: str) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if severity == "high" else dg.AssetCheckSeverity.WARN


def _cell(value: object) -> str | int | float | bool | None:
    """A table cell: numbers as floats (the UI sorts and shows them), times as ISO text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _type(column: str, text: frozenset[str]) -> str:
    if column in text:
        return "string"
    if column in _INT_COLUMNS:
        return "int"
    return "float" if column in _NUMBER_COLUMNS else "string"


def table(
    rows: list[dict], columns: tuple[str, ...], text: frozenset[str] = frozenset()
) -> dg.TableMetadataValue:
    """Rows as Dagster table metadata: shown inline in the UI, not behind a Markdown link.
    Amounts are numbers (`text`: columns that hold amounts with their currency as text)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name=c, type=_type(c, text)) for c in columns])
    records = [dg.TableRecord({c: _cell(row.get(c)) for c in columns}) for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


def per_currency(prefix: str, sums: dict[str, Decimal]) -> dict[str, float]:
    """`{prefix}_{CUR}`: one float per currency, so the UI plots each one run over run."""
    return {f"{prefix}_{currency}": float(amount) for currency, amount in sums.items()}


def totals_metadata(totals_by_currency: dict[str, dict], company: dict | None) -> dict:
    meta: dict = {}
    for currency, t in totals_by_currency.items():
        meta[f"money_at_risk_{currency}"] = float(t["money_at_risk"])
        meta[f"goods_at_risk_{currency}"] = float(t["goods_at_risk"])
    if company is not None:
        meta["company_currency"] = company["currency"]
        meta["money_at_risk_company"] = float(company["money_at_risk"])
        meta["goods_at_risk_company"] = float(company["goods_at_risk"])
    return meta


@dg.asset(
    key=MISMATCHES_KEY,
    deps=[CURRENT_KEY],
    group_name="recon",
    owners=OWNERS,
    description=(
        "Every difference found between the sales channels, the warehouse and the ERP, kept "
        "for good: when it was first and last seen, whether it is open, resolved or "
        "acknowledged by a person. One check per rule shows its open rows, with the money and "
        "goods at risk per currency."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            name=entry.rule,
            asset=MISMATCHES_KEY,
            description=(
                f"{entry.description}. Passes when nothing of this kind is open "
                f"({entry.severity} severity)."
            ),
        )
        for entry in CATALOG
    ],
)
def mismatches(context: dg.AssetExecutionContext, settings: SettingsResource):
    from pipelines.lib.recon.lifecycle import apply_lifecycle
    from pipelines.lib.recon.report import (
        CHECK_COLUMNS,
        cached_cases,
        cached_rows,
        cached_rule_summary,
        cached_totals,
        catalog_read_once,
        refresh_open_report,
    )
    from pipelines.lib.warehouse import connection

    mark("recon")
    resolved = settings.get()
    with connection(resolved.db_path) as con:
        summary = apply_lifecycle(con)
        # the open report's cases that changed, computed again (issue 24); the rest is SQL
        with catalog_read_once(con):
            refresh = refresh_open_report(con)
            totals_by_currency, totals_company = cached_totals(con)
            rules = {s["rule"]: s for s in cached_rule_summary(con)}
            cases = cached_cases(con)
            worst = cached_rows(con, per_rule=WORST_ROWS)
        acknowledged = dict(
            con.execute(
                "select rule, count(*) from recon.mismatches where status = 'acknowledged' "
                "group by 1"
            ).fetchall()
        )
    context.log.info(
        f"as_of {summary.as_of.isoformat()}: {summary.opened} new, {summary.reopened} reopened, "
        f"{summary.resolved} resolved, {summary.open_total} open or acknowledged"
    )
    yield dg.MaterializeResult(
        metadata={
            "as_of": summary.as_of.isoformat(),
            "opened": summary.opened,
            "reopened": summary.reopened,
            "still_open": summary.still_open,
            "resolved": summary.resolved,
            "open": refresh.rows,
            "acknowledged": sum(acknowledged.values()),
            "cases": cases,
            **totals_metadata(totals_by_currency, totals_company),
        }
    )
    for entry in CATALOG:
        rule = entry.rule
        count = rules[rule]["count"]
        yield dg.AssetCheckResult(
            check_name=rule,
            asset_key=MISMATCHES_KEY,
            passed=not count,
            severity=_check_severity(entry.severity),
            description=f"{count} open {rule} mismatch(es)",
            metadata={
                "severity": entry.severity,
                "description": entry.description,
                "count": count,
                "acknowledged": acknowledged.get(rule, 0),
                **per_currency("money_at_risk", rules[rule]["money_at_risk"]),
                **per_currency("goods_at_risk", rules[rule]["goods_at_risk"]),
                "worst_rows": table([r for r in worst if r["rule"] == rule], CHECK_COLUMNS),
            },
        )


@dg.asset(
    key=REPORT_KEY,
    deps=[MISMATCHES_KEY, ADJUSTMENTS_KEY],
    group_name="recon",
    owners=OWNERS,
    description=(
        "What finance reviews: every open difference, one case per return, with what to do "
        "about it, the adjustment planned for it, and the money and goods at risk counted once "
        "per case, per currency (and in the company currency where exchange rates were "
        "provided). The full table is also written as a spreadsheet-safe CSV file. No customer "
        "personal data."
    ),
)
def mismatch_report(context: dg.AssetExecutionContext, settings: SettingsResource):
    from pipelines.lib.recon.lifecycle import run_as_of
    from pipelines.lib.recon.report import (
        REPORT_COLUMNS,
        cached_cases,
        cached_csv,
        cached_rows,
        cached_rule_summary,
        cached_totals,
        catalog_read_once,
        refresh_open_report,
    )
    from pipelines.lib.warehouse import connection

    mark("report")
    resolved = settings.get()
    # read-write: the open report's cache takes the cases planning changed (issue 24)
    with connection(resolved.db_path) as con, catalog_read_once(con):
        refresh = refresh_open_report(con)
        text = cached_csv(con)  # spreadsheet-safe lines (pipelines.lib.csvsafe), report order
        totals_by_currency, totals_company = cached_totals(con)
        summary = cached_rule_summary(con)
        cases = cached_cases(con)
        shown = cached_rows(con, limit=REPORT_TABLE_ROWS)
        as_of = run_as_of(con)
    stamp = as_of.strftime("%Y%m%dT%H%M%SZ") if as_of else "unknown"
    path = resolved.data_dir / "reports" / f"mismatches_{stamp}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    by_rule = [
        {
            "rule": s["rule"],
            "severity": s["severity"],
            "count": s["count"],
            "money_at_risk": ", ".join(f"{v} {c}" for c, v in s["money_at_risk"].items()),
            "goods_at_risk": ", ".join(f"{v} {c}" for c, v in s["goods_at_risk"].items()),
            "description": s["description"],
        }
        for s in summary
    ]
    totals = [{"currency": c, **t} for c, t in totals_by_currency.items()]
    context.log.info(f"{refresh.rows} open mismatch(es) written to {path}")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat() if as_of else None,
            "open": refresh.rows,
            "cases": cases,
            **totals_metadata(totals_by_currency, totals_company),
            "csv_path": dg.MetadataValue.path(str(path)),
            "totals_by_currency": table(
                totals, ("currency", "money_at_risk", "goods_at_risk", "cases", "rows")
            ),
            "by_rule": table(
                by_rule,
                ("rule", "severity", "count", "money_at_risk", "goods_at_risk", "description"),
                text=frozenset({"money_at_risk", "goods_at_risk"}),
            ),
            "mismatches": table(shown, REPORT_COLUMNS),
            "rows_shown": len(shown),
        }
    )


defs = dg.Definitions(assets=[mismatches, mismatch_report])
