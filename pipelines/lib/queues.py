"""The queues a person works through, read from the warehouse (DESIGN §6, §7, §11, §12):

- `adjustments`: write-back adjustments (`writeback.adjustments`), any status;
- `exceptions`: the exception queue (`writeback.exceptions`), with the amount and currency of its
  adjustment when it has one;
- `dead_letters`: records that could not be decoded or parsed (`meta.dead_letters`);
- `quarantine`: files whose header did not match their contract (`meta.quarantine`).

Plain SQL over tables the migrations own; every filter is a bound parameter. `select_for_decision`
picks the adjustments a filtered `approve` / `reject` acts on, and `decision_state` says, id by
id, whether a decision is still to take, was already taken, or cannot be taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import duckdb


class QueueError(ValueError):
    """A filter that cannot be applied (unknown status, an amount without its currency...)."""


@dataclass(frozen=True)
class Queue:
    name: str
    table: str  # schema.table
    columns: tuple[str, ...]  # what a listing shows, in order
    time_column: str  # what --since compares
    order: str  # newest first, ties stable
    statuses: tuple[str, ...] = ()


ADJUSTMENT_STATUSES = ("planned", "approved", "rejected", "sent", "exception")
EXCEPTION_STATUSES = ("open", "closed")

QUEUES: dict[str, Queue] = {
    "adjustments": Queue(
        "adjustments",
        "writeback.adjustments",
        (
            "adjustment_id",
            "status",
            "rule",
            "rma_number",
            "sku",
            "action",
            "amount",
            "currency",
            "quantity",
            "approved_by",
            "approved_at",
            "decided_reason",
            "erp_document",
            "created_at",
            "sent_at",
            "mismatch_id",
        ),
        "created_at",
        "created_at desc, adjustment_id",
        ADJUSTMENT_STATUSES,
    ),
    "exceptions": Queue(
        "exceptions",
        "writeback.exceptions",
        (
            "exception_id",
            "status",
            "rule",
            "rma_number",
            "sku",
            "reason",
            "message",
            "adjustment_id",
            "amount",
            "currency",
            "created_at",
            "closed_at",
            "closed_reason",
            "mismatch_id",
        ),
        "created_at",
        "created_at desc, exception_id",
        EXCEPTION_STATUSES,
    ),
    "dead_letters": Queue(
        "dead_letters",
        "meta.dead_letters",
        ("source", "position", "error", "failed_at", "raw"),
        "failed_at",
        "failed_at desc, source, position",
    ),
    "quarantine": Queue(
        "quarantine",
        "meta.quarantine",
        ("source", "path", "reason", "quarantined_at", "quarantined_path", "sha256"),
        "quarantined_at",
        "quarantined_at desc, source, path",
    ),
}

# the select list of each queue (the exceptions take amount and currency from their adjustment;
# an adjustment's ERP document is shown by its number)
_SELECT = {
    "adjustments": {
        "erp_document": "json_extract_string(t.erp_document, '$.number') as erp_document",
    },
    "exceptions": {
        "amount": "a.amount",
        "currency": "a.currency",
    },
}
_FROM = {
    "exceptions": "writeback.exceptions t "
    "left join writeback.adjustments a on a.adjustment_id = t.adjustment_id",
}

CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Filters:
    """What a listing keeps; None means no condition."""

    status: str | None = None
    rule: str | None = None
    source: str | None = None
    rma: str | None = None
    currency: str | None = None
    max_amount: Decimal | None = None
    since: datetime | None = None
    contains: str | None = None  # a substring of the error / reason (case-insensitive)
    limit: int | None = None


def check_currency(currency: str | None) -> str | None:
    """An ISO 4217 code, upper-cased; QueueError when it is not three letters."""
    if currency is None:
        return None
    code = currency.strip().upper()
    if not CURRENCY.match(code):
        raise QueueError(f"currency {currency!r} is not an ISO 4217 code (three letters, e.g. EUR)")
    return code


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def _where(queue: Queue, f: Filters) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if f.status is not None and f.status != "all":
        if queue.statuses and f.status not in queue.statuses:
            raise QueueError(
                f"unknown status {f.status!r} for {queue.name}: use one of "
                f"{', '.join(queue.statuses)} or all"
            )
        where.append("t.status = ?")
        params.append(f.status)
    if f.rule is not None:
        where.append("t.rule = ?")
        params.append(f.rule)
    if f.source is not None:
        where.append("t.source = ?")
        params.append(f.source)
    if f.rma is not None:
        where.append("upper(trim(t.rma_number)) = upper(trim(?))")
        params.append(f.rma)
    amount = "a.amount" if queue.name == "exceptions" else "t.amount"
    currency = "a.currency" if queue.name == "exceptions" else "t.currency"
    if f.max_amount is not None and f.currency is None:
        raise QueueError("--max-amount needs --currency: amounts are never compared across them")
    if f.currency is not None:
        where.append(f"{currency} = ?")
        params.append(check_currency(f.currency))
    if f.max_amount is not None:
        where.append(f"{amount} is not null and abs({amount}) <= ?")
        params.append(f.max_amount)
    if f.since is not None:
        where.append(f"t.{queue.time_column} >= ?")
        params.append(f.since)
    if f.contains is not None:
        column = "error" if queue.name == "dead_letters" else "reason"
        where.append(f"contains(lower(t.{column}), lower(?))")
        params.append(f.contains)
    return where, params


def list_queue(con: duckdb.DuckDBPyConnection, name: str, filters: Filters) -> list[dict]:
    """The rows of queue `name` that pass `filters`, newest first, as dicts of its columns.

    An empty list when its table does not exist yet (nothing was ever queued)."""
    queue = QUEUES[name]
    where, params = _where(queue, filters)
    if not table_exists(con, queue.table):
        return []
    if name == "exceptions" and not table_exists(con, "writeback.adjustments"):
        return []
    select = ", ".join(_SELECT.get(name, {}).get(c, f"t.{c}") for c in queue.columns)
    source = _FROM.get(name, f"{queue.table} t")
    clause = f"where {' and '.join(where)}" if where else ""
    order = ", ".join(f"t.{part.strip()}" for part in queue.order.split(","))
    limit = ""
    if filters.limit is not None:
        limit = "limit ?"
        params.append(int(filters.limit))
    cursor = con.execute(f"select {select} from {source} {clause} order by {order} {limit}", params)
    return [dict(zip(queue.columns, row, strict=True)) for row in cursor.fetchall()]


# -- approve / reject ---------------------------------------------------------------------------

# the statuses a decision can be taken from (pipelines.lib.writeback.decide), and those in which
# it was, in effect, already taken (repeating it changes nothing)
DECIDABLE = {"approve": ("planned", "exception"), "reject": ("planned", "approved", "exception")}
ALREADY = {"approve": ("approved", "sent"), "reject": ("rejected",)}
# what a filter selects: approving by filter takes planned ones only (an adjustment in the
# exception queue is retried by its id, after a person read the ERP's message)
SELECTABLE = {"approve": ("planned",), "reject": ("planned", "approved", "exception")}


def select_for_decision(
    con: duckdb.DuckDBPyConnection, decision: str, filters: Filters
) -> list[dict]:
    """The adjustments a filtered `approve` / `reject` would act on, oldest first."""
    if not table_exists(con, "writeback.adjustments"):
        return []
    where, params = _where(QUEUES["adjustments"], filters)
    statuses = SELECTABLE[decision]
    where.append(f"t.status in ({', '.join('?' for _ in statuses)})")
    params.extend(statuses)
    where.append("t.in_flight_since is null")
    cursor = con.execute(
        "select t.adjustment_id, t.status, t.rule, t.rma_number, t.sku, t.action, t.amount, "
        "t.currency, t.quantity from writeback.adjustments t "
        f"where {' and '.join(where)} order by t.created_at, t.adjustment_id",
        params,
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass(frozen=True)
class DecisionState:
    adjustment_id: str
    status: str | None  # None: no such adjustment
    approved_by: str | None = None
    approved_at: datetime | None = None

    def kind(self, decision: str) -> str:
        """`todo`, `already` or `impossible` for `decision`."""
        if self.status in DECIDABLE[decision]:
            return "todo"
        if self.status in ALREADY[decision]:
            return "already"
        return "impossible"


def decision_state(
    con: duckdb.DuckDBPyConnection, adjustment_ids: list[str]
) -> list[DecisionState]:
    """Each id's status and who last decided it, in the order given (unknown ids: status None)."""
    if not table_exists(con, "writeback.adjustments"):
        return [DecisionState(a, None) for a in adjustment_ids]
    found = {}
    for adjustment_id in dict.fromkeys(adjustment_ids):
        row = con.execute(
            "select status, approved_by, approved_at from writeback.adjustments "
            "where adjustment_id = ?",
            [adjustment_id],
        ).fetchone()
        found[adjustment_id] = DecisionState(adjustment_id, *row) if row else None
    return [found[a] or DecisionState(a, None) for a in dict.fromkeys(adjustment_ids)]
