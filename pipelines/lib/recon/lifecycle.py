"""The mismatch lifecycle: `recon.recon_mismatches_current` (dbt) merged into `recon.mismatches`.

dbt rebuilds the current mismatches on every run; this module keeps their history, which dbt must
not own (it would drop and replace the table):

- a mismatch is keyed by its `mismatch_id` (an md5 of the rule and its natural key, computed in
  dbt), so the same data gives the same ids on every run;
- a new mismatch is `open` with `first_seen_at = last_seen_at = as_of`;
- one seen again keeps `first_seen_at`, gets `last_seen_at = as_of` and its latest details; a
  `resolved` one reopens; an `acknowledged` one stays acknowledged;
- one that stops appearing becomes `resolved` with `resolved_at = as_of`; nothing is ever deleted;
- every status change is appended to `recon.mismatch_history` (the audit trail).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from pipelines.lib.migrations import migrate

# The eleven rules of DESIGN §5 and their fixed severity (also in the dbt models: a unit test
# checks that the two agree).
SEVERITY: dict[str, str] = {
    "receipt_not_posted": "medium",
    "posted_qty_mismatch": "medium",
    "disposition_mismatch": "medium",
    "refund_without_credit": "high",
    "credit_amount_mismatch": "high",
    "currency_mismatch": "high",
    "duplicate_credit": "high",
    "credit_without_receipt": "high",
    "unmatched_receipt": "medium",
    "stale_return": "low",
    "unmapped_sku": "medium",
}
RULES: tuple[str, ...] = tuple(SEVERITY)
STATUSES: tuple[str, ...] = ("open", "resolved", "acknowledged")
SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}

CURRENT_TABLE = "recon.recon_mismatches_current"
RUN_TABLE = "recon.recon_run"
MISMATCHES_TABLE = "recon.mismatches"
HISTORY_TABLE = "recon.mismatch_history"

# The columns dbt produces for each current mismatch (DESIGN §5, plus the ERP `location`).
DETAIL_COLUMNS: tuple[str, ...] = (
    "rule",
    "severity",
    "rma_number",
    "sku",
    "warehouse",
    "location",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
)
REPORT_COLUMNS: tuple[str, ...] = (  # the report's columns: DESIGN §5's first, then extras
    "mismatch_id",
    "rule",
    "severity",
    "rma_number",
    "sku",
    "warehouse",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
    "first_seen_at",
    "last_seen_at",
    "status",
    "resolved_at",
    "location",
    "acknowledged_at",
    "acknowledged_by",
)


@dataclass(frozen=True)
class MergeSummary:
    """What one lifecycle merge did."""

    as_of: datetime
    opened: int  # new mismatches
    reopened: int  # resolved ones that appeared again
    still_open: int  # seen again (open or acknowledged)
    resolved: int  # stopped appearing in this run
    open_total: int  # open + acknowledged after the merge


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create `recon.mismatches` and its history if missing (never replaced)."""
    migrate(con)


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def run_as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The `as_of` of the last dbt recon build (`recon.recon_run`), if there is one."""
    try:
        row = con.execute(f"select max(as_of) from {RUN_TABLE}").fetchone()
    except duckdb.CatalogException:
        return None
    return _as_utc(row[0]) if row and row[0] is not None else None


def apply_lifecycle(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime | str | None = None,
    current_table: str = CURRENT_TABLE,
) -> MergeSummary:
    """Merge the current mismatches into `recon.mismatches` in one transaction.

    `as_of` defaults to the `as_of` dbt used (`recon.recon_run`), so the lifecycle and the rules
    agree on the run's time. Raises `LookupError` when the current table does not exist.
    """
    ensure_tables(con)
    when = _as_utc(as_of) if as_of is not None else run_as_of(con)
    if when is None:
        raise LookupError(f"{RUN_TABLE} is missing: build the dbt recon models first")
    schema, table = current_table.split(".")
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()[0]
    if not exists:
        raise LookupError(f"{current_table} is missing: build the dbt recon models first")

    details = ", ".join(DETAIL_COLUMNS)
    set_details = ", ".join(f"{c} = c.{c}" for c in DETAIL_COLUMNS)
    con.execute("begin transaction")
    try:
        con.execute(
            f"create or replace temp table _recon_current as "
            f"select distinct on (mismatch_id) mismatch_id, {details} from {current_table} "
            f"order by mismatch_id"
        )
        counts = con.execute(
            f"""
            select
                count(*) filter (where m.mismatch_id is null),
                count(*) filter (where m.status = 'resolved'),
                count(*) filter (where m.status in ('open', 'acknowledged'))
            from _recon_current c left join {MISMATCHES_TABLE} m using (mismatch_id)
            """
        ).fetchone()
        opened, reopened, still_open = (int(x or 0) for x in counts)
        # history first, while the old statuses are still there
        con.execute(
            f"""
            insert into {HISTORY_TABLE}
            select c.mismatch_id, 'open', ?, 'recon'
            from _recon_current c left join {MISMATCHES_TABLE} m using (mismatch_id)
            where m.mismatch_id is null or m.status = 'resolved'
            """,
            [when],
        )
        con.execute(
            f"""
            insert into {HISTORY_TABLE}
            select m.mismatch_id, 'resolved', ?, 'recon'
            from {MISMATCHES_TABLE} m anti join _recon_current c using (mismatch_id)
            where m.status in ('open', 'acknowledged')
            """,
            [when],
        )
        resolved = con.execute(
            f"""
            update {MISMATCHES_TABLE} m set status = 'resolved', resolved_at = ?
            where m.status in ('open', 'acknowledged')
              and m.mismatch_id not in (select mismatch_id from _recon_current)
            """,
            [when],
        ).fetchone()[0]
        con.execute(
            f"""
            update {MISMATCHES_TABLE} m set {set_details}, last_seen_at = ?,
                status = case when m.status = 'acknowledged' then 'acknowledged' else 'open' end,
                resolved_at = null
            from _recon_current c where m.mismatch_id = c.mismatch_id
            """,
            [when],
        )
        con.execute(
            f"""
            insert into {MISMATCHES_TABLE}
                (mismatch_id, {details}, first_seen_at, last_seen_at, status)
            select c.mismatch_id, {", ".join(f"c.{d}" for d in DETAIL_COLUMNS)}, ?, ?, 'open'
            from _recon_current c anti join {MISMATCHES_TABLE} m using (mismatch_id)
            """,
            [when, when],
        )
        open_total = con.execute(
            f"select count(*) from {MISMATCHES_TABLE} where status in ('open', 'acknowledged')"
        ).fetchone()[0]
        con.execute("drop table _recon_current")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return MergeSummary(
        as_of=when,
        opened=opened,
        reopened=reopened,
        still_open=still_open,
        resolved=int(resolved or 0),
        open_total=int(open_total),
    )


def acknowledge(
    con: duckdb.DuckDBPyConnection, mismatch_id: str, by: str, at: datetime | None = None
) -> bool:
    """Mark an open mismatch acknowledged by a person; it stays so across reruns.

    Returns False when there is no open mismatch with that id (resolved ones cannot be
    acknowledged; an acknowledged one is left as it was).
    """
    if not by or not by.strip():
        raise ValueError("acknowledge needs the name of who acknowledges (by)")
    ensure_tables(con)
    when = _as_utc(at) if at is not None else datetime.now(UTC)
    con.execute("begin transaction")
    try:
        changed = con.execute(
            f"""
            update {MISMATCHES_TABLE}
            set status = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?
            where mismatch_id = ? and status = 'open'
            """,
            [when, by.strip(), mismatch_id],
        ).fetchone()[0]
        if changed:
            con.execute(
                f"insert into {HISTORY_TABLE} values (?, 'acknowledged', ?, ?)",
                [mismatch_id, when, by.strip()],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return bool(changed)


def list_mismatches(
    con: duckdb.DuckDBPyConnection,
    status: str = "open",
    rule: str | None = None,
) -> list[dict]:
    """Mismatches as dicts with `REPORT_COLUMNS`, worst first (severity, then money, then qty).

    `status` is one of `STATUSES` or `all`. Raises `LookupError` when the table is missing.
    """
    if status != "all" and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)} or all")
    if rule is not None and rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: use one of {', '.join(RULES)}")
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'recon' and table_name = 'mismatches'"
    ).fetchone()[0]
    if not exists:
        raise LookupError(f"{MISMATCHES_TABLE} is missing: run the reconciliation first")
    where, params = [], []
    if status != "all":
        where.append("status = ?")
        params.append(status)
    if rule is not None:
        where.append("rule = ?")
        params.append(rule)
    clause = f"where {' and '.join(where)}" if where else ""
    cursor = con.execute(
        f"""
        select {", ".join(REPORT_COLUMNS)} from {MISMATCHES_TABLE} {clause}
        order by case severity when 'high' then 0 when 'medium' then 1 else 2 end,
                 abs(coalesce(amount_delta, 0)) desc, abs(coalesce(qty_delta, 0)) desc,
                 rule, rma_number, sku, mismatch_id
        """,
        params,
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
