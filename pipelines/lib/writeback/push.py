"""Push: send approved, unsent adjustments to the ERP, exactly once each (DESIGN §6).

For each approved adjustment, in a stable order:
1. it is marked in flight (committed), so a crash leaves a trace;
2. the adapter is called with the idempotency key: it searches the ERP for a document carrying the
   key and adopts it (finishing it if it stopped half-way) before creating anything, so a retry,
   a replay, a second launch or a restart after a crash cannot make a second document;
3. the outcome is committed at once: `sent` with the ERP document, or the attempt's error.
An adjustment whose mismatch is no longer open is only looked up: adopted when its document
exists (the loop closed after a crash), rejected by `auto` otherwise.

Errors: `ErpTransientError` is retried with exponential backoff (`RetryPolicy`); when the attempts
run out the adjustment goes to the exception queue and the push stops (the ERP is unreachable;
the rest stay approved for the next push). `ErpPermanentError` sends the adjustment to the
exception queue with the ERP's message and the push goes on. `ErpAuthError` stops the push
(`PushSummary.auth_failed`, the adjustment stays approved): nothing can be sent with wrong
credentials. Every ERP call's outcome is a row of
`writeback.attempts`; no message ever carries a secret.

Before the first adjustment is touched, the adapter's `check()` (a login, retried like any
transient error) makes sure the ERP answers and accepts the credentials: when it does not, the
push stops with `PushSummary.unreachable` or `auth_failed` and no adjustment changes state (the
refusal is logged as an attempt of the adjustment that would have gone first). An ERP that stops
answering in the middle of a push is the case above: that adjustment goes to the exception queue.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from pipelines.lib.erp import (
    ACTIONS,
    CREDIT_ACTIONS,
    LEGACY_ACTIONS,
    ErpAdapter,
    ErpAuthError,
    ErpDocument,
    ErpPermanentError,
    ErpTransientError,
    document_kind,
)
from pipelines.lib.stages import mark
from pipelines.lib.warehouse import connection
from pipelines.lib.writeback.plan import AUTO, _close_exception, _decide, exception_id_for
from pipelines.lib.writeback.schema import (
    ADJUSTMENTS,
    ATTEMPTS,
    EXCEPTIONS,
    ensure_tables,
    tables_exist,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per adjustment for transient errors, and the exponential backoff between them."""

    max_attempts: int = 4
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ValueError("backoff must not be negative")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure (1-based)."""
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))


@dataclass(frozen=True)
class PendingAdjustment:
    adjustment_id: str
    idempotency_key: str
    mismatch_id: str
    rule: str
    rma_number: str | None
    sku: str | None
    action: str
    payload: dict[str, Any]
    amount: Decimal | None
    quantity: Decimal | None
    currency: str | None
    approved_by: str | None
    mismatch_open: bool
    in_flight_since: datetime | None

    def describe(self) -> str:
        what = f"{self.action} " + (
            f"{self.amount} {self.currency or ''}".rstrip()
            if self.action in CREDIT_ACTIONS or self.action == "credit_note"
            else f"{self.quantity} x {self.payload.get('product_code')} "
            + (
                f"{self.payload['from_location_code']} "
                if self.payload.get("from_location_code")
                else ""
            )
            + f"-> {self.payload.get('to_location_code')}"
        )
        return (
            f"{self.adjustment_id} {self.rule} RMA {self.rma_number}: {what} "
            f"(approved by {self.approved_by})"
        )


@dataclass
class PushResult:
    adjustment_id: str
    outcome: str  # created | found | exception | obsolete | would_send | auth_error | stopped
    erp_document: dict[str, Any] | None = None
    message: str | None = None


@dataclass
class PushSummary:
    dry_run: bool = False
    created: int = 0  # documents this push created in the ERP
    found: int = 0  # documents that already existed with the key (adopted)
    exceptions: int = 0  # adjustments moved to the exception queue
    obsolete: int = 0  # mismatch gone and no document: rejected by auto
    remaining: int = 0  # approved adjustments left for a later push
    stopped_reason: str | None = None
    auth_failed: bool = False  # wrong credentials: nothing could be sent
    unreachable: bool = False  # the ERP did not answer: the push stopped
    results: list[PushResult] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.created + self.found

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "created": self.created,
            "found": self.found,
            "sent": self.sent,
            "exceptions": self.exceptions,
            "obsolete": self.obsolete,
            "remaining": self.remaining,
            "stopped_reason": self.stopped_reason,
            "auth_failed": self.auth_failed,
            "unreachable": self.unreachable,
        }


PENDING_SQL = f"""
    select a.adjustment_id, a.idempotency_key, a.mismatch_id, a.rule, a.rma_number, a.sku,
           a.action, a.payload, a.amount, a.quantity, a.currency, a.approved_by,
           coalesce(m.status = 'open', false) as mismatch_open, a.in_flight_since
    from {ADJUSTMENTS} as a
    left join recon.mismatches as m on m.mismatch_id = a.mismatch_id
    where a.status = 'approved'
    order by a.created_at, a.adjustment_id
"""


def pending_adjustments(con: duckdb.DuckDBPyConnection) -> list[PendingAdjustment]:
    """Approved, unsent adjustments in push order (read-only)."""
    if not tables_exist(con):
        return []
    has_mismatches = bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'recon' and table_name = 'mismatches'"
        ).fetchone()[0]
    )
    sql = PENDING_SQL
    if not has_mismatches:  # a warehouse without recon: treat every mismatch as open
        sql = sql.replace(
            "left join recon.mismatches as m on m.mismatch_id = a.mismatch_id",
            "left join (select null::varchar as mismatch_id, 'open' as status) as m "
            "on m.mismatch_id = a.mismatch_id",
        ).replace("coalesce(m.status = 'open', false)", "true")
    rows = con.execute(sql).fetchall()
    out = []
    for row in rows:
        values = list(row)
        values[7] = json.loads(values[7]) if isinstance(values[7], str) else values[7]
        out.append(PendingAdjustment(*values))
    return out


def batch_run_key(pending: Iterable[PendingAdjustment | tuple[str, str]]) -> str:
    """A run key for a batch: sha256 of its sorted `adjustment_id:idempotency_key` pairs."""
    pairs = sorted(
        (p.adjustment_id, p.idempotency_key) if isinstance(p, PendingAdjustment) else tuple(p)
        for p in pending
    )
    body = "\n".join(f"{a}:{k}" for a, k in pairs).encode()
    return "push-" + hashlib.sha256(body).hexdigest()[:32]


def _redact(message: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def _document_json(doc: ErpDocument) -> dict[str, Any]:
    return {
        "kind": doc.kind,
        "model": doc.model,
        "id": doc.erp_id,
        "number": doc.number,
        "state": doc.state,
        "amount": None if doc.amount is None else str(doc.amount),
        "line_ids": list(doc.line_ids),
    }


def _send(adapter: ErpAdapter, adj: PendingAdjustment) -> ErpDocument:
    """The adjustment's action through the adapter (the action vocabulary of
    `pipelines.lib.erp.base`); rows of an earlier release's actions under today's name."""
    action = LEGACY_ACTIONS.get(adj.action, adj.action)
    if action not in ACTIONS:
        raise ErpPermanentError(f"unknown adjustment action {adj.action!r}")
    return adapter.apply(action, adj.idempotency_key, adj.payload)


class _Log:
    """Writes attempts and outcomes, each in its own short committed statement."""

    def __init__(self, con: duckdb.DuckDBPyConnection, secrets: Sequence[str | None]) -> None:
        self.con = con
        self.secrets = secrets

    def now(self) -> datetime:
        return datetime.now(UTC)

    def attempt(self, adjustment_id: str, outcome: str, message: str | None) -> None:
        text = _redact(message, self.secrets) if message else None
        self.con.execute(
            f"""
            insert into {ATTEMPTS}
            select ?, coalesce(max(attempt), 0) + 1, ?, ?, ?
            from {ATTEMPTS} where adjustment_id = ?
            """,
            [adjustment_id, self.now(), outcome, text, adjustment_id],
        )

    def in_flight(self, adjustment_id: str) -> None:
        now = self.now()
        self.con.execute(
            f"update {ADJUSTMENTS} set in_flight_since = coalesce(in_flight_since, ?), "
            "updated_at = ? where adjustment_id = ?",
            [now, now, adjustment_id],
        )

    def sent(self, adj: PendingAdjustment, doc: ErpDocument) -> None:
        now = self.now()
        outcome = "created" if doc.created else "found"
        with _tx(self.con):
            self.con.execute(
                f"""
                update {ADJUSTMENTS} set status = 'sent', erp_document = ?, sent_at = ?,
                    in_flight_since = null, updated_at = ?
                where adjustment_id = ?
                """,
                [json.dumps(_document_json(doc)), now, now, adj.adjustment_id],
            )
            self.attempt(
                adj.adjustment_id, outcome, f"{doc.model} {doc.number or doc.erp_id} ({doc.state})"
            )

    def exception(self, adj: PendingAdjustment, outcome: str, reason: str, message: str) -> None:
        now = self.now()
        text = _redact(message, self.secrets)
        exception_id = exception_id_for("adjustment", adj.adjustment_id)
        with _tx(self.con):
            self.con.execute(
                f"""
                update {ADJUSTMENTS} set status = 'exception', in_flight_since = null,
                    decided_reason = ?, updated_at = ?
                where adjustment_id = ?
                """,
                [f"{reason}: {text}", now, adj.adjustment_id],
            )
            self.attempt(adj.adjustment_id, outcome, text)
            self.con.execute(
                f"""
                insert or replace into {EXCEPTIONS} (exception_id, mismatch_id, adjustment_id,
                    rule, rma_number, sku, reason, message, status, created_at, updated_at)
                values (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)
                """,
                [
                    exception_id,
                    adj.mismatch_id,
                    adj.adjustment_id,
                    adj.rule,
                    adj.rma_number,
                    adj.sku,
                    reason,
                    text,
                    now,
                    now,
                ],
            )

    def obsolete(self, adj: PendingAdjustment) -> None:
        now = self.now()
        with _tx(self.con):
            _decide(
                self.con,
                adj.adjustment_id,
                "rejected",
                AUTO,
                "its mismatch is no longer open and the ERP has no document with its key",
                now,
            )
            self.con.execute(
                f"update {ADJUSTMENTS} set in_flight_since = null where adjustment_id = ?",
                [adj.adjustment_id],
            )
            self.attempt(adj.adjustment_id, "obsolete", "mismatch no longer open; nothing sent")
            _close_exception(
                self.con, exception_id_for("adjustment", adj.adjustment_id), "obsolete", now
            )

    def clear_in_flight(self, adjustment_id: str) -> None:
        self.con.execute(
            f"update {ADJUSTMENTS} set in_flight_since = null where adjustment_id = ?",
            [adjustment_id],
        )


class _tx:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.execute("begin transaction")
        return self.con

    def __exit__(self, exc_type, exc, tb) -> None:
        self.con.execute("rollback" if exc_type else "commit")


class _Exhausted(Exception):
    def __init__(self, last: ErpTransientError, attempts: int) -> None:
        super().__init__(str(last))
        self.last = last
        self.attempts = attempts


def _with_retries(
    fn: Callable[[], Any],
    adjustment_id: str,
    log: _Log,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> Any:
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn()
        except ErpTransientError as exc:
            log.attempt(adjustment_id, "transient_error", str(exc))
            if attempt == policy.max_attempts:
                raise _Exhausted(exc, attempt) from None
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable")


def push_adjustments(
    db_path: Path | str,
    adapter: ErpAdapter | None,
    *,
    policy: RetryPolicy | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    only: Sequence[str] | None = None,
    secrets: Sequence[str | None] = (),
    sleep: Callable[[float], None] = time.sleep,
    on_document: Callable[[PendingAdjustment, ErpDocument], None] | None = None,
    progress: Callable[[PendingAdjustment, PushResult], None] | None = None,
) -> PushSummary:
    """Send approved, unsent adjustments (`only`: just these ids); see the module doc.

    `dry_run` reads the warehouse read-only and changes nothing: the summary lists what would be
    sent (`would_send`) and, when `adapter` is given, what the ERP could not build and why
    (`would_fail`, from `adapter.verify`; read-only calls). `on_document` is called after the ERP
    answered with a document and before the warehouse records it (tests use it to stand for a
    crash at that point). `secrets` are masked in every recorded message.
    """
    policy = policy or RetryPolicy()
    summary = PushSummary(dry_run=dry_run)
    if dry_run:
        if not Path(db_path).exists():
            return summary
        with connection(db_path, read_only=True) as con:
            pending = _select(pending_adjustments(con), only, limit)
        for adj in pending:
            summary.results.append(_dry_run_one(adapter, adj, secrets))
        summary.remaining = len(pending)
        return summary
    if adapter is None:
        raise ValueError("push needs an ERP adapter (or dry_run)")
    mark("writeback")
    with connection(db_path) as con:
        ensure_tables(con)
        pending = _select(pending_adjustments(con), only, limit)
    if pending and not _preflight(adapter, policy, sleep, secrets, summary, len(pending)):
        with connection(db_path) as con:  # the audit trail only: no adjustment changes state
            _Log(con, secrets).attempt(
                pending[0].adjustment_id,
                "auth_error" if summary.auth_failed else "transient_error",
                f"before any send: {summary.stopped_reason}",
            )
        return summary
    with connection(db_path) as con:
        pending = _select(pending_adjustments(con), only, limit)  # again: the lock was let go
        log = _Log(con, secrets)
        for index, adj in enumerate(pending):
            result = _push_one(adapter, adj, log, policy, sleep, on_document, summary)
            summary.results.append(result)
            if progress:
                progress(adj, result)
            if result.outcome == "auth_error":
                summary.auth_failed = True
                summary.remaining = len(pending) - index
                break
            if result.outcome == "stopped":
                summary.remaining = len(pending) - index - 1
                summary.unreachable = True
                break
    return summary


def _dry_run_one(
    adapter: ErpAdapter | None, adj: PendingAdjustment, secrets: Sequence[str | None]
) -> PushResult:
    """What a push would do with `adj`, checked against the ERP when there is an adapter
    (`verify`: product, party, address, location, accounts, an open period); nothing changes."""
    if adapter is None:
        return PushResult(adj.adjustment_id, "would_send", None, adj.describe())
    try:
        problems = adapter.verify(LEGACY_ACTIONS.get(adj.action, adj.action), adj.payload)
    except (ErpTransientError, ErpAuthError):
        raise
    except ErpPermanentError as exc:
        problems = [getattr(exc, "erp_message", None) or str(exc)]
    except (KeyError, TypeError, ValueError) as exc:  # a payload the adapter cannot read
        problems = [f"malformed payload: {type(exc).__name__}: {exc}"]
    if problems:
        text = _redact("; ".join(problems), secrets)
        return PushResult(adj.adjustment_id, "would_fail", None, f"{adj.describe()}: {text}")
    return PushResult(adj.adjustment_id, "would_send", None, adj.describe())


def _preflight(
    adapter: ErpAdapter,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    secrets: Sequence[str | None],
    summary: PushSummary,
    pending: int,
) -> bool:
    """The adapter's `check()` (when it has one), retried on transient errors; False (and the
    summary says why) when the ERP cannot be reached or refuses the credentials."""
    check = getattr(adapter, "check", None)
    if check is None:
        return True
    for attempt in range(1, policy.max_attempts + 1):
        try:
            check()
            return True
        except ErpAuthError as exc:
            summary.auth_failed = True
            summary.stopped_reason = f"ERP authentication failed: {_redact(str(exc), secrets)}"
            break
        except ErpTransientError as exc:
            if attempt == policy.max_attempts:
                summary.unreachable = True
                summary.stopped_reason = (
                    f"ERP unreachable after {attempt} attempt(s): {_redact(str(exc), secrets)}"
                )
                break
            sleep(policy.delay(attempt))
    summary.remaining = pending
    return False


def _select(
    pending: list[PendingAdjustment], only: Sequence[str] | None, limit: int | None
) -> list[PendingAdjustment]:
    if only is not None:
        wanted = set(only)
        pending = [p for p in pending if p.adjustment_id in wanted]
    return pending[:limit] if limit is not None else pending


def _push_one(
    adapter: ErpAdapter,
    adj: PendingAdjustment,
    log: _Log,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    on_document: Callable[[PendingAdjustment, ErpDocument], None] | None,
    summary: PushSummary,
) -> PushResult:
    log.in_flight(adj.adjustment_id)
    try:
        if adj.mismatch_open:
            doc = _with_retries(lambda: _send(adapter, adj), adj.adjustment_id, log, policy, sleep)
        else:
            doc = _with_retries(
                lambda: adapter.find_document(document_kind(adj.action), adj.idempotency_key),
                adj.adjustment_id,
                log,
                policy,
                sleep,
            )
            if doc is None:
                log.obsolete(adj)
                summary.obsolete += 1
                return PushResult(adj.adjustment_id, "obsolete")
            if doc.is_cancelled:
                raise ErpPermanentError(
                    f"{doc.model} {doc.number or doc.erp_id} with this key was cancelled in the ERP"
                )
    except _Exhausted as exc:
        message = f"gave up after {exc.attempts} attempt(s): {exc.last}"
        log.exception(adj, "exhausted", "the ERP stayed unreachable", message)
        summary.exceptions += 1
        summary.stopped_reason = f"ERP unreachable: {_redact(str(exc.last), log.secrets)}"
        return PushResult(adj.adjustment_id, "stopped", None, _redact(message, log.secrets))
    except ErpAuthError as exc:
        message = _redact(str(exc), log.secrets)
        log.attempt(adj.adjustment_id, "auth_error", message)
        log.clear_in_flight(adj.adjustment_id)
        summary.stopped_reason = f"ERP authentication failed: {message}"
        return PushResult(adj.adjustment_id, "auth_error", None, message)
    except ErpPermanentError as exc:
        erp_message = getattr(exc, "erp_message", None) or str(exc)
        log.exception(adj, "permanent_error", "the ERP refused the document", erp_message)
        summary.exceptions += 1
        return PushResult(adj.adjustment_id, "exception", None, _redact(erp_message, log.secrets))
    except Exception as exc:  # a bad payload or an adapter bug: a person looks, the batch goes on
        message = f"{type(exc).__name__}: {exc}"
        log.exception(adj, "error", "unexpected error while sending", message)
        summary.exceptions += 1
        return PushResult(adj.adjustment_id, "exception", None, _redact(message, log.secrets))
    if on_document is not None:
        on_document(adj, doc)
    log.sent(adj, doc)
    if doc.created:
        summary.created += 1
    else:
        summary.found += 1
    return PushResult(adj.adjustment_id, "created" if doc.created else "found", _document_json(doc))
