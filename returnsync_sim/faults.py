"""Each scenario's own plan: how a fault or near miss (scenarios.SCENARIOS) is laid on a return.

A scenario's plan is registered under its name with `@plans(name, ...)`; `plan_fault` runs it
for a return planned with that scenario, `plan_combo` for a combo (scenarios.COMBOS): the base's
plan, then each overlay's `overlay` (and, on a "complete" base, its `on_complete` first). A new
scenario = its row in scenarios.py + its plan here (tests/simulate checks every scenario has one).

Every draw from `rng` is part of a seed's output: the order of the draws below is the order the
landscape was built with, keep it (the simulator's tests compare landscapes by sha256).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import reference as ref
from .plan import CENT, CreditNote, Line, Refund, Return, hours, midnight, mistype

if TYPE_CHECKING:
    from datetime import datetime

    from .scenarios import Scenario

# the planner (planner.Planner) is passed in, never imported: it sits above the scenario plans
# a scenario's plan: (planner, return, rng, its name, the default age drawn for every scenario)
PlanFn = Callable[[Any, Return, random.Random, str, timedelta], None]
# an overlay of a combo: (planner, return, rng, the line it targets)
OverlayFn = Callable[[Any, Return, random.Random, Line], None]
# an overlay on a "complete" combo base, before it is placed: (..., the line, the return's end)
CompleteFn = Callable[[Any, Return, random.Random, Line, "datetime"], None]


@dataclass(frozen=True)
class ScenarioPlan:
    plan: PlanFn | None = None
    single_line: bool = False  # the return has exactly one line
    two_units: bool = False  # its (first, or overlaid) line has at least two units
    no_credit: bool = False  # on a "complete" combo base: the refund comes last
    on_complete: CompleteFn | None = None
    overlay: OverlayFn | None = None
    stock: bool = False  # a stock fault: its line gets one receipt and one inspection
    replaceable: bool = False  # as a combo base: placed again (its timing is free)
    # extra receipts (Scenario.extra_receipt): how old the unmatched receipt is
    receipt_age: Callable[[Any, random.Random, str], timedelta] | None = None


PLANS: dict[str, ScenarioPlan] = {}
NO_PLAN = ScenarioPlan()


def plans(*names: str, **spec) -> Callable[[PlanFn], PlanFn]:
    """Register the decorated function as the plan of the scenarios `names`."""

    def register(fn):
        for name in names:
            assert name not in PLANS, name
            if spec.get("plan", fn) is None:  # an extra receipt: `fn` is its age
                PLANS[name] = ScenarioPlan(receipt_age=fn)
            else:
                PLANS[name] = ScenarioPlan(fn, **spec)
        return fn

    return register


def plan_fault(p: Any, r: Return, rng: random.Random, name: str) -> None:
    old = hours(rng.uniform(36, 800))  # drawn for every scenario: a seed's output stays
    spec = PLANS[name]
    assert spec.plan is not None, name
    spec.plan(p, r, rng, name, old)
    assert max(r.times()) <= p.as_of, name


# -- stock ---------------------------------------------------------------------------------------
@plans("receipt_not_posted")
def _receipt_not_posted(p, r, rng, name, old):
    ln0 = r.lines[0]
    p.complete(r, rng)
    r.moves = [m for m in r.moves if m.line is not ln0]
    p.place(r, max(r.times()), old)


@plans("receipt_not_posted_at_boundary", "nm_posting_grace", single_line=True)
def _posting_boundary(p, r, rng, name, old):
    end = p.receive(r, rng, r.approved_at, compact=True)
    p.place(r, end, hours(24) - (p.margin if name == "nm_posting_grace" else timedelta(0)))


@plans("posted_qty_over")
@plans("posted_qty_short", two_units=True)
def _posted_qty(p, r, rng, name, old):
    ln0 = r.lines[0]
    p.complete(r, rng, simple_first=True)
    m = next(m for m in r.moves if m.line is ln0)
    m.qty += -1 if name == "posted_qty_short" else 1
    p.place(r, max(r.times()), old)


def _other_disposition(rng, m) -> str:
    return rng.choice([d for d in ref.DISPOSITIONS if d != m.disposition])


def _other_warehouse(rng, r) -> int:
    return rng.choice([w for w in range(3) if w != r.warehouse])


@plans("wrong_disposition", "wrong_warehouse")
def _wrong_location(p, r, rng, name, old):
    ln0 = r.lines[0]
    p.complete(r, rng, simple_first=True)
    m = next(m for m in r.moves if m.line is ln0)
    if name == "wrong_disposition":
        m.disposition = _other_disposition(rng, m)
    else:
        m.warehouse = _other_warehouse(rng, r)
    p.place(r, max(r.times()), old)


@plans("wrong_disposition_recent", single_line=True)
def _wrong_disposition_recent(p, r, rng, name, old):
    p.receive(r, rng, r.approved_at, compact=True)
    end = p.post(r, rng)
    m = r.moves[0]
    m.disposition = _other_disposition(rng, m)
    p.place(r, end, hours(rng.uniform(0.5, 1.5)))


# -- money ---------------------------------------------------------------------------------------
def _draft_credits(r) -> None:
    for c in r.credits:
        c.state, c.paid_at = "draft", None


@plans("missing_credit_note", "draft_credit_note", "nm_failed_refund_transaction")
def _credit_not_posted(p, r, rng, name, old):
    if name == "nm_failed_refund_transaction":
        p.complete(r, rng, credit=False, split=False, status="failure")
    else:
        p.complete(r, rng, credit=name == "draft_credit_note", split=False, refund_last=True)
    _draft_credits(r)
    p.place(r, max(r.times()), hours(rng.uniform(60, 700)))


@plans("missing_credit_at_boundary", "nm_credit_grace", single_line=True)
def _credit_boundary(p, r, rng, name, old):
    p.complete(r, rng, credit=False, split=False, refund_last=True)
    p.place(
        r,
        r.refunds[0].at,
        hours(48) - (p.margin if name == "nm_credit_grace" else timedelta(0)),
    )


def _amount_off(rng, c) -> Decimal:
    return rng.choice(
        (Decimal("0.02"), Decimal("-0.02"), Decimal("4.95"), -(c.total / 10).quantize(CENT))
    )


@plans("credit_amount_off", "nm_amount_at_tolerance")
def _credit_amount(p, r, rng, name, old):
    p.complete(r, rng, split=False)
    c = r.credits[0]
    if name == "nm_amount_at_tolerance":
        c.delta = rng.choice((CENT, -CENT))
    else:
        c.delta = _amount_off(rng, c)
    p.place(r, max(r.times()), hours(rng.uniform(2, 800)))


def _wrong_currency(rng, r) -> None:
    cur = rng.choice([c for c in ref.CURRENCIES if c != r.currency])
    for c in r.credits:
        c.currency = cur


@plans("credit_currency_wrong")
def _credit_currency(p, r, rng, name, old):
    p.complete(r, rng)
    _wrong_currency(rng, r)
    p.place(r, max(r.times()), hours(rng.uniform(2, 800)))


def _second_credit(rng, r, ln, end, name, state="posted") -> None:
    at = end + hours(rng.uniform(24, 200))
    if name == "duplicate_refund":
        r.refunds.append(Refund(at, [(ln, ln.qty)]))
    r.credits.append(
        CreditNote(at + hours(rng.uniform(0.5, 20)), [(ln, ln.qty)], state, r.currency)
    )


@plans(
    "duplicate_credit_note_b2b",
    "duplicate_credit_note",
    "duplicate_refund",
    "nm_cancelled_credit_note",
)
def _duplicate(p, r, rng, name, old):
    end = p.complete(r, rng, split=False)
    state = "cancelled" if name == "nm_cancelled_credit_note" else "posted"
    _second_credit(rng, r, r.lines[0], end, name, state)
    p.place(r, max(r.times()), hours(rng.uniform(2, 600)))


@plans("nm_split_refund", two_units=True)
def _split_refund(p, r, rng, name, old):
    ln0 = r.lines[0]
    end = p.complete(r, rng, split=False)
    first = r.refunds[0]
    first.items = [(ln0, 1), *first.items[1:]]
    first.amounts = first.item_amounts()
    r.refunds.append(
        Refund(
            end + hours(rng.uniform(2, 48)),
            [(ln0, ln0.qty - 1)],
            amounts=[ln0.total - first.amounts[0]],
        )
    )
    p.place(r, max(r.times()), hours(rng.uniform(2, 600)))


# -- linkage -------------------------------------------------------------------------------------
@plans("credit_without_receipt")
def _credit_without_receipt(p, r, rng, name, old):
    p.refund(r, rng, r.approved_at + hours(rng.uniform(1, 12)), split=False)
    p.place(r, r.approved_at, hours(rng.uniform(420, 650)))


@plans("nm_receipt_after_credit_grace")
def _receipt_after_credit_grace(p, r, rng, name, old):
    p.refund(r, rng, r.approved_at + hours(rng.uniform(1, 12)), split=False)
    c = r.credits[0]
    # the first invoice date whose 00:00 + 336 h is more than an hour after as_of
    day = (p.as_of - hours(335)).date() + timedelta(days=1)
    target = midnight(day) + hours(1)
    c.paid_at = None
    r.shift(target - c.at)


def _unmapped(r, ln) -> None:
    ln.channel_sku = f"{ln.channel_sku}-V{r.index}"


@plans("unmapped_sku")
def _unmapped_sku(p, r, rng, name, old):
    _unmapped(r, r.lines[0])
    p.complete(r, rng)
    p.place(r, max(r.times()), hours(rng.uniform(2, 800)))


@plans("nm_mistyped_rma", "nm_tracking_only")
def _rma_scan(p, r, rng, name, old):
    p.complete(r, rng)
    for ln in r.lines:
        for rc in ln.receipts:
            rc.rma_scan = mistype(r.rma, rng) if name == "nm_mistyped_rma" else None
    p.place(r, max(r.times()), hours(rng.uniform(2, 800)))


@plans(
    "unmatched_receipt",
    "unmatched_receipt_no_rma",
    "unmatched_receipt_at_boundary",
    "nm_unmatched_grace",
    plan=None,
)
def _unmatched_age(p, rng, name) -> timedelta:
    """An extra receipt next to a clean return (wms emitter): how old it is."""
    return {  # both draws for each of the four (a seed's output stays)
        "unmatched_receipt": hours(rng.uniform(30, 400)),
        "unmatched_receipt_no_rma": hours(rng.uniform(30, 400)),
        "unmatched_receipt_at_boundary": hours(24),
        "nm_unmatched_grace": hours(24) - p.margin,
    }[name]


# -- aging ---------------------------------------------------------------------------------------
@plans("stale_return", "stale_return_at_boundary", "nm_stale_grace")
def _stale(p, r, rng, name, old):
    drawn = hours(rng.uniform(800, 1500))  # drawn for each of the three (a seed's output stays)
    age = {
        "stale_return": drawn,
        "stale_return_at_boundary": hours(720),
        "nm_stale_grace": hours(720) - p.margin,
    }[name]
    p.place(r, r.approved_at, age)


@plans("nm_keep_item")
def _keep_item(p, r, rng, name, old):
    p.keep_item(r, rng)
    p.place(r, r.approved_at, hours(rng.uniform(800, 1500)))


@plans("nm_cancelled_old")
def _cancelled_old(p, r, rng, name, old):
    p.plan_clean(r, rng, "cancelled")
    p.place(r, r.approved_at, hours(rng.uniform(800, 1500)))


# -- combos: each fault's behaviour as an overlay on another scenario's return ------------------
def _drop_move(p, r, rng, ln) -> None:
    r.moves = [m for m in r.moves if m.line is not ln]


def _only_move(r, ln):
    (m,) = [m for m in r.moves if m.line is ln]  # one inspection: one move
    return m


def _qty_over(p, r, rng, ln) -> None:
    _only_move(r, ln).qty += 1


def _qty_short(p, r, rng, ln) -> None:
    _only_move(r, ln).qty -= 1


def _disposition(p, r, rng, ln) -> None:
    m = _only_move(r, ln)
    m.disposition = _other_disposition(rng, m)


def _warehouse(p, r, rng, ln) -> None:
    _only_move(r, ln).warehouse = _other_warehouse(rng, r)


def _amount(p, r, rng, ln) -> None:
    c = next(c for c in r.credits if c.state in ("posted", "paid"))
    c.delta = _amount_off(rng, c)


def _currency(p, r, rng, ln) -> None:
    _wrong_currency(rng, r)


def _map_off(p, r, rng, ln) -> None:
    _unmapped(r, ln)


def _duplicate_on_complete(name: str) -> CompleteFn:
    def on_complete(p, r, rng, ln, end) -> None:
        _second_credit(rng, r, ln, end, name)

    return on_complete


def _no_credits(p, r, rng, ln, end) -> None:
    r.credits = []


def _drafts(p, r, rng, ln, end) -> None:
    _draft_credits(r)


for _name, _spec in {
    "receipt_not_posted": {"overlay": _drop_move},
    "posted_qty_over": {"overlay": _qty_over, "stock": True},
    "posted_qty_short": {"overlay": _qty_short, "stock": True},
    "wrong_disposition": {"overlay": _disposition, "stock": True},
    "wrong_warehouse": {"overlay": _warehouse, "stock": True},
    "credit_amount_off": {"overlay": _amount},
    "credit_currency_wrong": {"overlay": _currency},
    "unmapped_sku": {"overlay": _map_off},
    "duplicate_credit_note": {"on_complete": _duplicate_on_complete("duplicate_credit_note")},
    "duplicate_credit_note_b2b": {
        "on_complete": _duplicate_on_complete("duplicate_credit_note_b2b")
    },
    "duplicate_refund": {"on_complete": _duplicate_on_complete("duplicate_refund")},
    "missing_credit_note": {"on_complete": _no_credits, "no_credit": True},
    "draft_credit_note": {"on_complete": _drafts, "no_credit": True},
}.items():
    PLANS[_name] = replace(PLANS[_name], **_spec)

# combo bases whose timing is free (placed again 60-700 h before as_of, so every grace a stock or
# money fault needs has passed); the other bases keep their exact timing
for _name in (
    "nm_amount_at_tolerance",
    "nm_cancelled_credit_note",
    "nm_split_refund",
    "nm_failed_refund_transaction",
    "nm_mistyped_rma",
    "nm_tracking_only",
):
    PLANS[_name] = replace(PLANS[_name], replaceable=True)


def plan_combo(p: Any, r: Return, rng: random.Random, combo: Scenario) -> None:
    """Several faults on one return (scenarios.COMBOS): the base, then each overlay."""
    overlays = [(PLANS[f], r.lines[j]) for f, j in combo.overlays]
    r.simple_lines = frozenset(j for f, j in combo.overlays if PLANS[f].stock)
    if combo.base == "complete":
        no_credit = any(spec.no_credit for spec, _ in overlays)
        end = p.complete(r, rng, split=False, refund_last=no_credit)
        for spec, ln in overlays:
            if spec.on_complete is not None:
                spec.on_complete(p, r, rng, ln, end)
        p.place(r, max(r.times()), hours(rng.uniform(60, 700)))
    else:
        plan_fault(p, r, rng, combo.base)
        if PLANS[combo.base].replaceable:
            p.place(r, max(r.times()), hours(rng.uniform(60, 700)))
    for spec, ln in overlays:
        if spec.overlay is not None:
            spec.overlay(p, r, rng, ln)
    assert max(r.times()) <= p.as_of, combo.name
