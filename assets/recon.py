"""Reconciliation in Dagster: the mismatch lifecycle, one check per rule, and the report.

- `recon/mismatches` merges dbt's `recon/recon_mismatches_current` into the persistent history
  (pipelines/lib/recon/lifecycle.py) and carries one asset check per row of the rule catalog
  (dbt_project/seeds/rule_catalog.csv, read when the definitions load): it passes when the rule
  has no open mismatch; its metadata shows severity, count, amount at risk and the worst rows.
- `recon/mismatch_report` is the open table: Markdown in its metadata and a CSV file under
  `<data_dir>/reports/`.
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

WORST_ROWS = 10  # rows per check
REPORT_MD_ROWS = 1000  # rows of the report's Markdown metadata (the CSV has them all)


def _check_severity(severity: str) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if severity == "high" else dg.AssetCheckSeverity.WARN


def _money(value: Decimal) -> str:
    return format(value, "f")


@dg.asset(
    key=MISMATCHES_KEY,
    deps=[CURRENT_KEY],
    group_name="recon",
    description=(
        "Every mismatch ever raised, with first/last seen, status (open, resolved, acknowledged) "
        "and resolved_at: the audit trail. Merged from recon_mismatches_current after each dbt "
        "build; never dropped."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            name=entry.rule,
            asset=MISMATCHES_KEY,
            description=(
                f"{entry.description} (rule {entry.rule}, {entry.family}, {entry.severity}): "
                "passes with no open mismatch."
            ),
        )
        for entry in CATALOG
    ],
)
def mismatches(context: dg.AssetExecutionContext, settings: SettingsResource):
    from pipelines.lib.recon.lifecycle import apply_lifecycle, list_mismatches
    from pipelines.lib.recon.report import CHECK_COLUMNS, amount_at_risk, to_markdown
    from pipelines.lib.warehouse import connection

    mark("recon")
    resolved = settings.get()
    with connection(resolved.db_path) as con:
        summary = apply_lifecycle(con)
        open_rows = list_mismatches(con, status="open")
        acknowledged = list_mismatches(con, status="acknowledged")
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
            "open": len(open_rows),
            "acknowledged": len(acknowledged),
            "amount_at_risk": _money(amount_at_risk(open_rows)),
        }
    )
    for entry in CATALOG:
        rule = entry.rule
        mine = [r for r in open_rows if r["rule"] == rule]
        acked = sum(1 for r in acknowledged if r["rule"] == rule)
        yield dg.AssetCheckResult(
            check_name=rule,
            asset_key=MISMATCHES_KEY,
            passed=not mine,
            severity=_check_severity(entry.severity),
            description=f"{len(mine)} open {rule} mismatch(es)",
            metadata={
                "severity": entry.severity,
                "description": entry.description,
                "count": len(mine),
                "acknowledged": acked,
                "amount_at_risk": _money(amount_at_risk(mine)),
                "worst_rows": dg.MetadataValue.md(to_markdown(mine[:WORST_ROWS], CHECK_COLUMNS)),
            },
        )


@dg.asset(
    key=REPORT_KEY,
    deps=[MISMATCHES_KEY],
    group_name="recon",
    description=(
        "The open mismatches (DESIGN §5 report): per-rule summary and the table as Markdown, "
        "the full table as CSV under <data_dir>/reports/. No personal data."
    ),
)
def mismatch_report(context: dg.AssetExecutionContext, settings: SettingsResource):
    from pipelines.lib.recon.lifecycle import list_mismatches, run_as_of
    from pipelines.lib.recon.report import amount_at_risk, rule_summary, to_csv, to_markdown
    from pipelines.lib.warehouse import connection

    mark("report")
    resolved = settings.get()
    with connection(resolved.db_path, read_only=True) as con:
        rows = list_mismatches(con, status="open")
        as_of = run_as_of(con)
    stamp = as_of.strftime("%Y%m%dT%H%M%SZ") if as_of else "unknown"
    path = resolved.data_dir / "reports" / f"mismatches_{stamp}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(to_csv(rows), encoding="utf-8")  # spreadsheet-safe (pipelines.lib.csvsafe)
    tmp.replace(path)
    summary = rule_summary(rows)
    summary_md = to_markdown(
        [{**s, "amount_at_risk": _money(s["amount_at_risk"])} for s in summary],
        ("rule", "severity", "count", "amount_at_risk", "description"),
    )
    shown = rows[:REPORT_MD_ROWS]
    table_md = to_markdown(shown)
    if len(rows) > len(shown):
        table_md += f"\n_{len(shown)} of {len(rows)} rows shown; the CSV has them all._\n"
    context.log.info(f"{len(rows)} open mismatch(es) written to {path}")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat() if as_of else None,
            "open": len(rows),
            "amount_at_risk": _money(amount_at_risk(rows)),
            "csv_path": dg.MetadataValue.path(str(path)),
            "by_rule": dg.MetadataValue.md(summary_md),
            "mismatches": dg.MetadataValue.md(table_md),
        }
    )


defs = dg.Definitions(assets=[mismatches, mismatch_report])
