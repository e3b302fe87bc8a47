"""Reconciliation after dbt: the mismatch lifecycle and the report (DESIGN §5).

The rules themselves are dbt models (`dbt_project/models/recon/`); this package keeps the
persistent history `recon.mismatches` and formats the open mismatches for people. No Dagster here.
"""

from pipelines.lib.recon.lifecycle import (
    CURRENT_TABLE,
    MISMATCHES_TABLE,
    RULES,
    SEVERITY,
    STATUSES,
    MergeSummary,
    acknowledge,
    apply_lifecycle,
    ensure_tables,
    list_mismatches,
)

__all__ = [
    "CURRENT_TABLE",
    "MISMATCHES_TABLE",
    "RULES",
    "SEVERITY",
    "STATUSES",
    "MergeSummary",
    "acknowledge",
    "apply_lifecycle",
    "ensure_tables",
    "list_mismatches",
]
