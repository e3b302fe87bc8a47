"""The `writeback` schema: adjustments, the append-only attempt log, the exception queue.

- `writeback.adjustments`: one row per planned ERP document (credit note or stock posting), keyed
  by `adjustment_id` and unique by `idempotency_key` (the key the ERP document carries). Status:
  `planned` (waits for a person) → `approved` (by `auto` under the limits, or by a person) →
  `sent` (the ERP document exists; `erp_document` says which) or `exception` (the ERP refused it,
  or retries ran out: a person looks, and may approve it again to retry); `rejected` (by a
  person, or by `auto` when its mismatch went away before it was sent) is never sent.
  `in_flight_since` is set while a push works on the row; a row left so by a crash is looked up
  in the ERP by its key before anything is created.
- `writeback.attempts`: append-only, one row per ERP call outcome (never a secret).
- `writeback.exceptions`: the queue for a person: open mismatches without an automatic fix, and
  adjustments the ERP refused or could not take. Closed (never deleted) when the mismatch
  resolves or the adjustment is approved again.
"""

from __future__ import annotations

import duckdb

from pipelines.lib.erp.base import ACTIONS as _ERP_ACTIONS
from pipelines.lib.migrations import migrate

ADJUSTMENTS = "writeback.adjustments"
ATTEMPTS = "writeback.attempts"
EXCEPTIONS = "writeback.exceptions"

STATUSES: tuple[str, ...] = ("planned", "approved", "rejected", "sent", "exception")
ACTIONS: tuple[str, ...] = _ERP_ACTIONS  # the action vocabulary (pipelines/lib/erp/base.py)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the `writeback` schema and its tables if missing (never replaced)."""
    migrate(con)


def tables_exist(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'writeback' and table_name = 'adjustments'"
        ).fetchone()[0]
    )


LIST_COLUMNS: tuple[str, ...] = (
    "adjustment_id",
    "rule",
    "rma_number",
    "sku",
    "action",
    "amount",
    "quantity",
    "currency",
    "status",
    "approved_by",
    "decided_reason",
)
EXCEPTION_COLUMNS: tuple[str, ...] = (
    "exception_id",
    "rule",
    "rma_number",
    "sku",
    "adjustment_id",
    "reason",
    "message",
)


def list_adjustments(con: duckdb.DuckDBPyConnection, status: str | None = None) -> list[dict]:
    """Adjustments (of one status, or all) as dicts of `LIST_COLUMNS`, oldest first."""
    if not tables_exist(con):
        return []
    where, params = ("where status = ?", [status]) if status else ("", [])
    cursor = con.execute(
        f"select {', '.join(LIST_COLUMNS)} from {ADJUSTMENTS} {where} "
        "order by created_at, adjustment_id",
        params,
    )
    return [dict(zip(LIST_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def list_open_exceptions(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The open exception queue as dicts of `EXCEPTION_COLUMNS`, oldest first."""
    if not tables_exist(con):
        return []
    cursor = con.execute(
        f"select {', '.join(EXCEPTION_COLUMNS)} from {EXCEPTIONS} where status = 'open' "
        "order by created_at, exception_id"
    )
    return [dict(zip(EXCEPTION_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
