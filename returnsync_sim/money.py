"""Answer key of the money per case (DESIGN §11), written from the plan of every return.

`expected_money.csv`: one row per (case, currency) of a return that was given a fault: the RMA
(a case is one return), the currency, the money at risk and the goods at risk, computed from
what was injected (the planned refunds, credit notes, lines, inspections and stock moves), never
from the product's SQL. Returns without money or goods at risk have no row.

The definitions, as they apply to a planned return (pipelines/lib/recon/report.py's docstring
says the same for the report):
- channel refund: Shopify refunds with a successful transaction (their amount); Amazon, when
  refunded, every line's total; B2B none. ERP credit: credit notes posted or paid (their total,
  in their currency).
- money at risk, per currency: the largest exposure among the return's expected money rules:
  refund_without_credit the refund; credit_amount_mismatch |credit - refund|; currency_mismatch
  the refund (in its currency); credit_without_receipt the credit; duplicate_credit, per line,
  (units credited or refunded - units authorized) x unit price.
- goods at risk, per return line with an expected stock rule: max(units missing where they were
  inspected, units posted beyond what was inspected) x unit price; a (line, location) counts once
  its last inspection is posting_grace_h (24 h) old, or right away where nothing was inspected
  there (as the rules raise them). A case's goods are the sum of its lines'.

The same observer writes `reference/fx_rates.csv`: daily rates to the company currency (EUR) for
USD and GBP over the landscape's time span; none for CHF, so a CHF figure has no company value.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from . import reference as ref

MONEY_FILE = "expected_money.csv"
FX_FILE = "reference/fx_rates.csv"
COMPANY_CURRENCY = "EUR"  # the settings seed's company_currency
FX_BASE = {"USD": Decimal("0.92"), "GBP": Decimal("1.17")}  # CHF: no rates, on purpose
FX_DAYS = 400  # rates for every day of the last FX_DAYS before as_of
POSTING_GRACE = timedelta(hours=24)
CENT = Decimal("0.01")
MONEY_RULES = frozenset(
    {
        "refund_without_credit",
        "credit_amount_mismatch",
        "currency_mismatch",
        "credit_without_receipt",
        "duplicate_credit",
    }
)
STOCK_RULES = frozenset({"receipt_not_posted", "posted_qty_mismatch", "disposition_mismatch"})


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def channel_refunds(r) -> dict[str, Decimal]:
    """The return's channel refund per currency, as the product reads it."""
    if r.channel == "shopify":
        total = sum((f.amount for f in r.refunds if f.status == "success"), Decimal(0))
    elif r.channel == "amazon" and r.amazon_refund_at is not None:
        total = sum((_cents(ln.total) for ln in r.lines), Decimal(0))
    else:
        total = Decimal(0)
    return {r.currency: _cents(total)} if total > 0 else {}


def erp_credits(r) -> dict[str, Decimal]:
    """Posted or paid ERP credit notes per currency."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for c in r.credits:
        if c.state in ("posted", "paid"):
            out[c.currency or r.currency] += c.total.quantize(CENT)
    return dict(out)


def money_at_risk(r, rules: set[str], skus_by_rule: dict[str, set[str]]) -> dict[str, Decimal]:
    """Per currency, the largest exposure of the return's expected money rules."""
    refunds, credits = channel_refunds(r), erp_credits(r)
    exposures: list[tuple[str, Decimal]] = []
    if "refund_without_credit" in rules:
        exposures += list(refunds.items())
    if "currency_mismatch" in rules:
        exposures += list(refunds.items())
    if "credit_amount_mismatch" in rules:
        for currency, refund in refunds.items():
            exposures.append((currency, abs(credits.get(currency, Decimal(0)) - refund)))
    if "credit_without_receipt" in rules:
        exposures += list(credits.items())
    for ln in r.lines:
        if ln.product.code not in skus_by_rule.get("duplicate_credit", set()):
            continue
        credited = sum(
            q
            for c in r.credits
            if c.state in ("posted", "paid")
            for line, q in c.items
            if line is ln
        )
        refunded = sum(
            q for f in r.refunds if f.status == "success" for line, q in f.items if line is ln
        )
        over = max(credited, refunded) - ln.qty
        if over > 0:
            exposures.append((r.currency, ln.product.price * over))
    out: dict[str, Decimal] = {}
    for currency, amount in exposures:
        out[currency] = max(out.get(currency, Decimal(0)), _cents(amount))
    return {c: a for c, a in out.items() if a > 0}


def goods_at_risk(r, as_of, skus: set[str]) -> Decimal:
    """Sum over the lines with an expected stock rule of max(missing, excess) x unit price."""
    total = Decimal(0)
    for ln in r.lines:
        if ln.product.code not in skus:
            continue
        inspected: dict[str, int] = defaultdict(int)
        last: dict[str, object] = {}
        for rc in ln.receipts:
            for ins in rc.inspections:
                loc = ref.location_code(r.warehouse, ins.disposition)
                inspected[loc] += ins.qty
                last[loc] = max(last.get(loc, ins.at), ins.at)
        posted: dict[str, int] = defaultdict(int)
        for m in r.moves:
            if m.line is ln:
                posted[ref.location_code(m.warehouse, m.disposition)] += m.qty
        missing = excess = 0
        for loc in set(inspected) | set(posted):
            got, want = posted.get(loc, 0), inspected.get(loc, 0)
            due = want == 0 or last[loc] + POSTING_GRACE <= as_of
            if not due or got == want:
                continue
            if got < want:
                missing += want - got
            else:
                excess += got - want
        total += ln.product.price * max(missing, excess)
    return _cents(total)


class MoneyAtRisk:
    """Observer (returnsync_sim/observers.py): the money answer key and the fx rates file."""

    name = "money"
    files = (MONEY_FILE,)

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, Decimal, Decimal]] = []
        self.wrote_rates = False

    def write_rates(self, sim) -> None:
        """reference/fx_rates.csv through the simulator's writer (counted like every file)."""
        w = sim.file(FX_FILE, ["date", "currency", "rate_to_company"])
        first = sim.as_of.date() - timedelta(days=FX_DAYS)
        for n in range(FX_DAYS + 1):
            day = first + timedelta(days=n)
            for currency, base in FX_BASE.items():
                wobble = Decimal(str(round(math.sin(day.toordinal() / 9 + len(currency)), 6)))
                rate = (base * (1 + wobble / 50)).quantize(Decimal("0.000001"))
                w.write_row([day.isoformat(), currency, str(rate)])
                sim.file_records["reference"] += 1

    def on_return(self, sim, r, scenario, expected) -> None:
        if not self.wrote_rates:
            self.wrote_rates = True
            self.write_rates(sim)
        if not expected:
            return
        rules = {rule for rule, _, _ in expected}
        skus: dict[str, set[str]] = defaultdict(set)
        for rule, _, sku in expected:
            skus[rule].add(sku)
        money = money_at_risk(r, rules & MONEY_RULES, skus)
        stock_skus = set().union(*(skus[k] for k in STOCK_RULES if k in skus))
        goods = goods_at_risk(r, sim.as_of, stock_skus) if stock_skus else Decimal(0)
        for currency in sorted(set(money) | ({r.currency} if goods else set())):
            goods_here = goods if currency == r.currency else Decimal(0)
            self.rows.append((r.rma, currency, money.get(currency, Decimal(0)), goods_here))

    def finish(self, sim, out) -> dict:
        with open(out / MONEY_FILE, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["rma_number", "currency", "money_at_risk", "goods_at_risk"])
            for rma, currency, money, goods in sorted(self.rows):
                w.writerow([rma, currency, f"{money:.2f}", f"{goods:.2f}"])
        totals: dict[str, dict[str, str]] = {}
        for _, currency, money, goods in self.rows:
            t = totals.setdefault(currency, {"money_at_risk": "0", "goods_at_risk": "0"})
            t["money_at_risk"] = str(Decimal(t["money_at_risk"]) + money)
            t["goods_at_risk"] = str(Decimal(t["goods_at_risk"]) + goods)
        return {
            "company_currency": COMPANY_CURRENCY,
            "totals_by_currency": dict(sorted(totals.items())),
        }
