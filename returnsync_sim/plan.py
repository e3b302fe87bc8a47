"""The plan of one return: what happened to it, line by line (receipts, inspections, stock moves,
channel refunds, ERP credit notes), before any source writes a record of it. The planner
(planner.py, faults.py) builds it; one emitter per source (emitters/) writes what that source
would deliver; observers (observers.py) read it for the answer key."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from . import reference as ref

CENT = Decimal("0.01")


@dataclass
class Inspection:
    disposition: str
    qty: int
    at: datetime


@dataclass
class Receipt:
    qty: int
    at: datetime
    inspections: list[Inspection] = field(default_factory=list)
    rma_scan: str | None = None
    tracking: str | None = None


@dataclass
class Line:
    product: ref.Product
    qty: int
    ordered: int
    channel_sku: str
    reason: int
    tax: Decimal = Decimal(0)
    receipts: list[Receipt] = field(default_factory=list)
    sale_line_id: int = 0
    ret_line_id: int = 0
    shop_line_item_id: int = 0
    saas_line_item_id: int = 0

    @property
    def subtotal(self) -> Decimal:
        return self.product.price * self.qty

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax

    def unit_total(self, qty: int) -> Decimal:
        return (self.total * qty / self.qty).quantize(CENT, ROUND_HALF_UP)


@dataclass
class Move:
    line: Line
    warehouse: int
    disposition: str
    qty: int
    at: datetime


@dataclass
class Refund:  # a Shopify refund object
    at: datetime
    items: list[tuple[Line, int]]
    status: str = "success"  # success | failure | none (restock only, no transaction)
    failed_first: bool = False
    amounts: list[Decimal] | None = None  # per item, when not the pro-rata share

    def item_amounts(self) -> list[Decimal]:
        return self.amounts or [ln.unit_total(q) for ln, q in self.items]

    @property
    def amount(self) -> Decimal:
        return sum(self.item_amounts(), Decimal(0))


@dataclass
class CreditNote:
    at: datetime
    items: list[tuple[Line, int]]
    state: str = "posted"  # posted | paid | draft | cancelled
    currency: str = ""
    delta: Decimal = Decimal(0)  # ERP total minus the lines' total (injected faults)
    paid_at: datetime | None = None

    @property
    def total(self) -> Decimal:
        return sum((ln.unit_total(q) for ln, q in self.items), Decimal(0)) + self.delta


@dataclass
class Return:
    index: int
    channel: str
    stage: str
    rma: str
    currency: str
    party: int
    warehouse: int
    lines: list[Line]
    approved_at: datetime
    order_at: datetime
    outcome: str = "refund"
    tracking: str = ""
    state: str = "open"
    state_at: datetime | None = None  # closed/cancelled time
    erp_return: bool = True
    erp_at: datetime | None = None
    refunds: list[Refund] = field(default_factory=list)
    amazon_refund_at: datetime | None = None
    amazon_delivery: datetime | None = None
    credits: list[CreditNote] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    b2b_status: str = "approved"
    requested_at: datetime | None = None
    simple_lines: frozenset[int] = frozenset()  # lines with one receipt and one inspection

    def times(self) -> list[datetime]:
        ts = [self.approved_at, self.order_at]
        ts += [
            t
            for t in (
                self.state_at,
                self.erp_at,
                self.amazon_refund_at,
                self.amazon_delivery,
                self.requested_at,
            )
            if t
        ]
        for ln in self.lines:
            for rc in ln.receipts:
                ts.append(rc.at)
                ts += [i.at for i in rc.inspections]
        ts += [m.at for m in self.moves] + [r.at for r in self.refunds]
        ts += [c.at for c in self.credits]
        return ts

    def shift(self, delta: timedelta) -> None:
        def sh(t):
            return None if t is None else t + delta

        self.approved_at += delta
        self.order_at += delta
        self.state_at, self.erp_at = sh(self.state_at), sh(self.erp_at)
        self.amazon_refund_at, self.amazon_delivery = (
            sh(self.amazon_refund_at),
            sh(self.amazon_delivery),
        )
        self.requested_at = sh(self.requested_at)
        for ln in self.lines:
            for rc in ln.receipts:
                rc.at += delta
                for i in rc.inspections:
                    i.at += delta
        for m in self.moves:
            m.at += delta
        for r in self.refunds:
            r.at += delta
        for c in self.credits:
            c.at += delta
            c.paid_at = sh(c.paid_at)

    @property
    def received(self) -> bool:
        return any(ln.receipts for ln in self.lines)


def hours(x: float) -> timedelta:
    return timedelta(seconds=round(x * 3600))


def iso_z(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_local(dt: datetime, offset_min: int) -> str:
    """ISO-8601 with the local offset a channel prints (`+00:00` for UTC)."""
    return dt.astimezone(timezone(timedelta(minutes=offset_min))).isoformat()


def money(d: Decimal) -> str:
    return f"{d.quantize(CENT, ROUND_HALF_UP):.2f}"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def mistype(rma: str, rng: random.Random) -> str:
    """An RMA as a hurried scan prints it: case, dash and spaces vary (letters/digits intact)."""
    variant = rng.randrange(4)
    if variant == 0:
        return rma.lower()
    if variant == 1:
        return rma.replace("-", "")
    if variant == 2:
        return " " + rma.replace("-", " ") + " "
    return rma.lower().replace("-", "")
