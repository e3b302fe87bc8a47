"""A person's decision on an adjustment: `approve` or `reject`, recorded with who and when."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from pipelines.lib.writeback.plan import _close_exception, _decide, exception_id_for
from pipelines.lib.writeback.schema import ADJUSTMENTS, ensure_tables


class DecisionError(ValueError):
    """The adjustment does not exist or cannot take this decision in its status."""


def _status(con: duckdb.DuckDBPyConnection, adjustment_id: str) -> tuple[str, object]:
    row = con.execute(
        f"select status, in_flight_since from {ADJUSTMENTS} where adjustment_id = ?",
        [adjustment_id],
    ).fetchone()
    if row is None:
        raise DecisionError(f"no adjustment {adjustment_id!r}")
    return row


def _who(by: str) -> str:
    if not by or not by.strip():
        raise DecisionError("a decision needs the name of who takes it (--by NAME)")
    if by.strip().lower() == "auto":
        raise DecisionError("'auto' is reserved for automatic approval: give your own name")
    return by.strip()


def approve(
    con: duckdb.DuckDBPyConnection, adjustment_id: str, by: str, at: datetime | None = None
) -> str:
    """Approve a planned adjustment, or one in the exception queue to retry it.

    Returns the new status (`approved`); raises `DecisionError` for an unknown id or a status
    that cannot be approved (rejected, sent, already approved).
    """
    ensure_tables(con)
    who, when = _who(by), at or datetime.now(UTC)
    status, _ = _status(con, adjustment_id)
    if status not in ("planned", "exception"):
        raise DecisionError(
            f"adjustment {adjustment_id} is {status}: only planned adjustments "
            "or those in the exception queue can be approved"
        )
    reason = "approved" if status == "planned" else "approved again after an exception"
    con.execute("begin transaction")
    try:
        _decide(con, adjustment_id, "approved", who, reason, when)
        _close_exception(
            con, exception_id_for("adjustment", adjustment_id), f"approved by {who}", when
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return "approved"


def reject(
    con: duckdb.DuckDBPyConnection,
    adjustment_id: str,
    by: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> str:
    """Reject an adjustment that was not sent: it is never sent. Returns `rejected`."""
    ensure_tables(con)
    who, when = _who(by), at or datetime.now(UTC)
    status, in_flight = _status(con, adjustment_id)
    if status not in ("planned", "approved", "exception"):
        raise DecisionError(f"adjustment {adjustment_id} is {status}: it cannot be rejected")
    if in_flight is not None:
        raise DecisionError(
            f"adjustment {adjustment_id} was being pushed when a push stopped (in flight since "
            f"{in_flight}): push again first, so the ERP is checked for its document"
        )
    con.execute("begin transaction")
    try:
        _decide(con, adjustment_id, "rejected", who, (reason or "").strip() or "rejected", when)
        _close_exception(
            con, exception_id_for("adjustment", adjustment_id), f"rejected by {who}", when
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return "rejected"
