"""Write-back: adjustments planned from mismatches, approved, and pushed to the ERP (DESIGN §6).

Plain Python, no Dagster:

    from pipelines.lib.writeback import plan_adjustments, approve, reject, push_adjustments
"""

from pipelines.lib.writeback.decide import DecisionError, approve, reject
from pipelines.lib.writeback.plan import (
    CREDIT_RULES,
    FIXABLE_RULES,
    STOCK_RULES,
    Limits,
    PlanSummary,
    Proposal,
    adjustment_id_for,
    idempotency_key,
    plan_adjustments,
    propose,
    read_limits,
)
from pipelines.lib.writeback.push import (
    PendingAdjustment,
    PushResult,
    PushSummary,
    RetryPolicy,
    batch_run_key,
    pending_adjustments,
    push_adjustments,
)
from pipelines.lib.writeback.schema import (
    ADJUSTMENTS,
    ATTEMPTS,
    EXCEPTIONS,
    STATUSES,
    ensure_tables,
    list_adjustments,
    list_open_exceptions,
    tables_exist,
)

__all__ = [
    "ADJUSTMENTS",
    "ATTEMPTS",
    "CREDIT_RULES",
    "EXCEPTIONS",
    "FIXABLE_RULES",
    "STATUSES",
    "STOCK_RULES",
    "DecisionError",
    "Limits",
    "PendingAdjustment",
    "PlanSummary",
    "Proposal",
    "PushResult",
    "PushSummary",
    "RetryPolicy",
    "adjustment_id_for",
    "approve",
    "batch_run_key",
    "ensure_tables",
    "idempotency_key",
    "list_adjustments",
    "list_open_exceptions",
    "pending_adjustments",
    "plan_adjustments",
    "propose",
    "push_adjustments",
    "read_limits",
    "reject",
    "tables_exist",
]
