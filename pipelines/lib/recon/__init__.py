"""Reconciliation after dbt: the mismatch lifecycle and the report (DESIGN §5).

The rules themselves are dbt models (`dbt_project/models/recon/`), listed in the rule catalog
(`catalog.py`, reading `dbt_project/seeds/rule_catalog.csv`); this package keeps the persistent
history `recon.mismatches` and formats the open mismatches for people. No Dagster here.
"""

from pipelines.lib.recon.catalog import CATALOG, Rule, load_catalog
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
    migrate_rule_ids,
)

__all__ = [
    "CATALOG",
    "CURRENT_TABLE",
    "MISMATCHES_TABLE",
    "RULES",
    "SEVERITY",
    "STATUSES",
    "MergeSummary",
    "Rule",
    "acknowledge",
    "apply_lifecycle",
    "ensure_tables",
    "list_mismatches",
    "load_catalog",
    "migrate_rule_ids",
]
