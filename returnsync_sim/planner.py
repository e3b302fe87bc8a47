"""Planning: the plan of each return (plan.py), drawn from its seed-derived random stream.

`Planner.plan` builds a return (channel, lines, RMA, times) and plans what happened to it: a clean
return follows one of the channel's `CLEAN_STAGES` (here); a return carrying a fault, a near miss
or a combo is planned by that scenario's own plan (faults.py). The building blocks (receive,
post, refund, credit, complete, place) are shared by both.

Every draw from `rng` is part of a seed's output: reordering them changes the landscape (the
simulator's tests compare whole landscapes by sha256).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP

from . import faults
from . import reference as ref
from .options import SimOptions
from .plan import CENT, CreditNote, Inspection, Line, Move, Receipt, Refund, Return, hours
from .scenarios import Scenario

CLEAN_STAGES = {
    "shopify": (
        ("complete", 62),
        ("awaiting", 10),
        ("refunded_awaiting", 6),
        ("inspected_unposted", 6),
        ("received_uninspected", 4),
        ("cancelled", 3),
        ("exchange", 5),
        ("keep_item", 4),
    ),
    "amazon": (
        ("complete", 70),
        ("awaiting", 10),
        ("refunded_awaiting", 6),
        ("inspected_unposted", 7),
        ("received_uninspected", 7),
    ),
    "b2b": (
        ("complete", 65),
        ("awaiting", 12),
        ("refunded_awaiting", 5),
        ("inspected_unposted", 7),
        ("received_uninspected", 6),
        ("cancelled", 5),
    ),
}
CHANNEL_WEIGHTS = {"shopify": 5, "amazon": 3, "b2b": 2}


def _weighted(rng: random.Random, pairs) -> str:
    names = [p[0] for p in pairs]
    return rng.choices(names, weights=[p[1] for p in pairs])[0]


class Planner:
    def __init__(
        self,
        as_of: datetime,
        opt: SimOptions,
        products: list[ref.Product],
        n_parties: int,
        next_id: Callable[[str], int],
    ) -> None:
        self.as_of = as_of
        self.opt = opt
        self.products = products
        self.n_parties = n_parties
        self.next_id = next_id
        # how far inside its window a grace near miss lies
        self.margin = timedelta(seconds=opt.near_miss_margin_s)

    def plan(self, i: int, rng: random.Random, channel: str, scen: Scenario | None) -> Return:
        name = scen.name if scen else ""
        combo = scen if scen is not None and scen.kind == "combo" else None
        if combo is not None:
            name = combo.base
        stage = "complete"
        if scen is None:
            stage = _weighted(rng, CLEAN_STAGES[channel])
        spec = faults.PLANS.get(name, faults.NO_PLAN)  # "" (clean) and "complete" have none
        single = spec.single_line
        currency = rng.choice(ref.CHANNEL_CURRENCIES[channel])
        n_lines = 1 if single else rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
        if combo is not None:
            n_lines = max(n_lines, combo.min_lines)
        picks = rng.sample(self.products, n_lines)
        need_two = spec.two_units
        lines = []
        for j, p in enumerate(picks):
            qty = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
            if j == 0 and need_two:
                qty = max(qty, 2)
            if combo is not None and any(
                faults.PLANS[f].two_units for f, k in combo.overlays if k == j
            ):
                qty = max(qty, 2)
            reasons = {
                "shopify": ref.SAAS_REASONS,
                "amazon": ref.AMAZON_REASONS,
                "b2b": ref.B2B_REASONS,
            }[channel]
            ln = Line(
                p,
                qty,
                qty + rng.choice((0, 0, 0, 1)),
                p.channel_sku(channel),
                rng.randrange(len(reasons)),
            )
            ln.tax = (ln.subtotal * ref.TAX_RATES[currency]).quantize(CENT, ROUND_HALF_UP)
            ln.sale_line_id = self.next_id("sale_line")
            ln.ret_line_id = self.next_id("sale_line")
            lines.append(ln)
        rma = {"shopify": f"LR-{100000 + i}", "amazon": f"D{i:07d}RMA", "b2b": f"CR-{i:07d}"}[
            channel
        ]
        anchor = self.as_of
        r = Return(
            i,
            channel,
            stage,
            rma,
            currency,
            rng.randint(1, self.n_parties),
            rng.randrange(len(ref.WAREHOUSES)),
            lines,
            anchor,
            anchor - hours(rng.uniform(24, 300)),
        )
        r.tracking = f"1Z{rng.randrange(16**6):06X}{i:010d}"
        r.erp_at = anchor + hours(rng.uniform(0.1, 6))
        if channel == "b2b":
            r.requested_at = anchor - hours(rng.uniform(1, 48))
        if scen is None:
            self.plan_clean(r, rng, stage)
        elif combo is not None:
            faults.plan_combo(self, r, rng, combo)
        else:
            faults.plan_fault(self, r, rng, name)
        return r

    def receive(
        self,
        r: Return,
        rng: random.Random,
        start: datetime,
        compact: bool = False,
        simple_first: bool = False,
    ) -> datetime:
        """Receipts and inspections for every line from `start`; returns the last inspection."""
        last = start
        box_at = start + hours(rng.uniform(40, 150))
        for j, ln in enumerate(r.lines):
            simple = compact or (simple_first and j == 0) or j in r.simple_lines
            qty = ln.qty
            if not simple and qty >= 2 and rng.random() < 0.1:
                qty -= 1  # partial receipt: one unit never came back
            parts = [qty]
            if not simple and qty >= 2 and rng.random() < 0.15:
                parts = [qty - 1, 1]
            at = box_at if compact else box_at + hours(rng.uniform(0, 2))
            for k, pq in enumerate(parts):
                rc_at = at + (hours(rng.uniform(2, 48)) if k else timedelta(0))
                rc = Receipt(pq, rc_at, rma_scan=r.rma, tracking=r.tracking)
                dispositions = list(ref.DISPOSITIONS)
                first = rng.choices(dispositions, weights=(70, 15, 10, 5))[0]
                if not simple and pq >= 2 and rng.random() < 0.25:
                    second = rng.choice([d for d in dispositions if d != first])
                    split = [(first, pq - 1), (second, 1)]
                else:
                    split = [(first, pq)]
                for disp, iq in split:
                    lag = rng.uniform(1, 3) if compact else rng.uniform(1, 36)
                    lag += self.stall_h(r)
                    ins = Inspection(disp, iq, rc_at + hours(lag))
                    rc.inspections.append(ins)
                    last = max(last, ins.at)
                ln.receipts.append(rc)
        return last

    def stall_h(self, r: Return) -> float:
        """Extra hours before inspection at the stalled warehouse (SimOptions.stalled_warehouse)."""
        if self.opt.stalled_warehouse == ref.WAREHOUSES[r.warehouse][1]:
            return self.opt.stall_h
        return 0.0

    def post(self, r: Return, rng: random.Random) -> datetime:
        """Stock moves: one per (line, disposition location), after its last inspection."""
        last = r.approved_at
        for ln in r.lines:
            by_disp: dict[str, tuple[int, datetime]] = {}
            for rc in ln.receipts:
                for ins in rc.inspections:
                    q, t = by_disp.get(ins.disposition, (0, ins.at))
                    by_disp[ins.disposition] = (q + ins.qty, max(t, ins.at))
            for disp, (q, t) in by_disp.items():
                m = Move(ln, r.warehouse, disp, q, t + hours(rng.uniform(0.5, 12)))
                r.moves.append(m)
                last = max(last, m.at)
        return last

    def refund(
        self,
        r: Return,
        rng: random.Random,
        at: datetime,
        split: bool = True,
        credit: bool = True,
        status: str = "success",
    ) -> datetime:
        """Channel refund at `at` (Shopify refunds / Amazon refunded amounts) + ERP credit."""
        last = at
        items = [(ln, ln.qty) for ln in r.lines]
        if r.channel == "shopify":
            groups = [items]
            if split and len(items) >= 2 and rng.random() < 0.2:
                groups = [items[:1], items[1:]]
            for k, g in enumerate(groups):
                t = at + (hours(rng.uniform(1, 24)) if k else timedelta(0))
                fail = status == "success" and rng.random() < self.opt.rate(
                    "failed_transaction_rate"
                )
                r.refunds.append(Refund(t, g, status, failed_first=fail))
                last = max(last, self.credit(r, rng, t, g) if credit else t)
        elif r.channel == "amazon":
            r.amazon_refund_at = at
            if credit:
                last = self.credit(r, rng, at, items)
        elif credit:
            last = self.credit(r, rng, at, items)
        return last

    def credit(self, r: Return, rng: random.Random, at: datetime, items) -> datetime:
        t = at + hours(rng.uniform(0.5, 20))
        paid = t + hours(rng.uniform(24, 100)) if rng.random() < 0.5 else None
        r.credits.append(CreditNote(t, list(items), "posted", r.currency, paid_at=paid))
        return t

    def place(self, r: Return, end: datetime, age: timedelta) -> None:
        """Shift the whole return so that `end` lies `age` before as_of."""
        r.shift(self.as_of - age - end)

    def plan_clean(self, r: Return, rng: random.Random, stage: str) -> None:
        A = r.approved_at
        if stage == "complete":
            self.complete(r, rng)
            self.place(r, max(r.times()), hours(rng.uniform(2, 1500)))
        elif stage == "awaiting":
            if r.channel == "shopify" and rng.random() < 0.1:
                r.state = "review"
            if r.channel == "b2b" and rng.random() < 0.5:
                r.b2b_status, r.erp_return = "submitted", False
            self.place(r, A, hours(rng.uniform(30, 600)))
        elif stage == "refunded_awaiting":
            end = self.refund(r, rng, A + hours(rng.uniform(1, 12)), split=False)
            self.place(r, A, hours(rng.uniform(max(40, (end - A) / timedelta(hours=1) + 2), 250)))
        elif stage == "inspected_unposted":
            end = self.receive(r, rng, A, compact=True)
            self.place(r, end, hours(rng.uniform(2, 12)))
        elif stage == "received_uninspected":
            end = self.receive(r, rng, A, compact=True)
            for ln in r.lines:
                for rc in ln.receipts:
                    rc.inspections.clear()
            end = max(rc.at for ln in r.lines for rc in ln.receipts)
            self.place(r, end, hours(rng.uniform(1, 20) + self.stall_h(r)))
        elif stage == "cancelled":
            if r.channel == "b2b":
                r.b2b_status, r.erp_return = "rejected", False
                r.state_at = A
            else:
                r.state, r.state_at = "cancelled", A + hours(rng.uniform(2, 100))
            self.place(r, max(r.times()), hours(rng.uniform(1, 1500)))
        elif stage == "exchange":
            r.outcome = rng.choice(("exchange", "store_credit"))
            end = self.receive(r, rng, A)
            end = max(end, self.post(r, rng))
            if rng.random() < 0.5:  # a restock-only refund object: no transaction, no money
                r.refunds.append(Refund(end + hours(1), [(ln, ln.qty) for ln in r.lines], "none"))
                end += hours(1)
            r.state, r.state_at = "closed", end
            self.place(r, max(r.times()), hours(rng.uniform(2, 1500)))
        elif stage == "keep_item":
            self.keep_item(r, rng)
            self.place(r, max(r.times()), hours(rng.uniform(2, 1500)))
        else:  # pragma: no cover
            raise ValueError(stage)

    def keep_item(self, r: Return, rng: random.Random) -> None:
        r.outcome = "keep_item"
        end = self.refund(r, rng, r.approved_at + hours(rng.uniform(0.5, 24)), split=False)
        r.state, r.state_at = "closed", end

    def complete(
        self,
        r: Return,
        rng: random.Random,
        simple_first: bool = False,
        refund: bool = True,
        credit: bool = True,
        refund_last: bool = False,
        split: bool = True,
        status: str = "success",
    ) -> datetime:
        A = r.approved_at
        last_ins = self.receive(r, rng, A, simple_first=simple_first)
        end = max(last_ins, self.post(r, rng))
        first_rc = min(rc.at for ln in r.lines for rc in ln.receipts)
        last_rc = max(rc.at for ln in r.lines for rc in ln.receipts)
        if r.channel == "amazon":
            r.amazon_delivery = first_rc if (refund_last or rng.random() < 0.8) else None
        if refund:
            if r.channel == "b2b":
                at = last_ins + hours(rng.uniform(2, 48))
            elif refund_last:
                at = end + hours(rng.uniform(1, 10))
            else:
                at = last_rc + hours(rng.uniform(1, 30))
            if r.channel == "amazon":
                r.amazon_delivery = r.amazon_delivery and min(r.amazon_delivery, at)
            end = max(end, self.refund(r, rng, at, split=split, credit=credit, status=status))
        r.state, r.state_at = "closed", end
        return end
