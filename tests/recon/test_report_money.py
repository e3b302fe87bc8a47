"""The finance report's money (DESIGN §11), on warehouses built in the test: cases, each figure
on one row, totals per currency (never across currencies), company-currency figures only where a
rate exists on or before the date, the JSON shape, formula safety of the new columns, and the
planner's per-currency auto-approve limit."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import duckdb
import pytest

from pipelines.lib.recon.lifecycle import apply_lifecycle
from pipelines.lib.recon.report import (
    REPORT_COLUMNS,
    build_report,
    case_id_for,
    rate_on,
    render,
    suggested_action,
)
from pipelines.lib.writeback import plan
from pipelines.lib.writeback.plan import Limits, Proposal, needs_approval, read_limits
from pipelines.settings import DBT_PROJECT_DIR
from tests.recon.recon_helpers import mismatch, publish, publish_money, publish_rates

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
REFUND_AT = datetime(2026, 2, 10, 15, 0, tzinfo=UTC)
INSPECTED_AT = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)

# WR-1 (GBP): posted into the wrong location, a pair of stock rows of one line (+/-960.10)
WRONG = mismatch(
    "disposition_mismatch", "WR-1", "SKU-A", warehouse="WH-C", location="WH-C-SCR",
    expected="0.000", actual="2.000", qty_delta=2, amount_delta=960.10,
)  # fmt: skip
NOT_POSTED = mismatch(
    "receipt_not_posted", "WR-1", "SKU-A", warehouse="WH-C", location="WH-C-RFB",
    expected="2.000", actual="0.000", qty_delta=-2, amount_delta=-960.10,
)  # fmt: skip
# DC-2 (EUR): a second credit note: duplicate_credit and credit_amount_mismatch, one money
DUPLICATE = mismatch(
    "duplicate_credit", "DC-2", "SKU-B", expected="1.000", actual="2.000", qty_delta=1,
    amount_delta=50,
)  # fmt: skip
OVER = mismatch(
    "credit_amount_mismatch", "DC-2", expected="59.5000", actual="119.0000", amount_delta=59.5
)
# CM-3 (USD refund, EUR credit): currency_mismatch, the refund at risk
CURRENCY = mismatch("currency_mismatch", "CM-3", expected="USD", actual="EUR")
# CH-4 (CHF, no rate): refund without credit
MISSING = mismatch(
    "refund_without_credit", "CH-4", expected="80.0000", actual="0", amount_delta=-80
)
# UN-5: a receipt scanned with no RMA: no amount, no currency, a case of its own
UNMATCHED = mismatch("unmatched_receipt", None, "SKU-C", warehouse="WH-E", qty_delta=1)

MONEY = [
    ("WR-1", "return", "GBP", None, None),
    ("DC-2", "return", "EUR", None, None),
    ("DC-2", "refund", "EUR", 59.5, REFUND_AT),
    ("DC-2", "credit", "EUR", 119, REFUND_AT),
    ("CM-3", "return", "USD", None, None),
    ("CM-3", "refund", "USD", 70, REFUND_AT),
    ("CM-3", "credit", "EUR", 70, REFUND_AT),
    ("CH-4", "return", "CHF", None, None),
    ("CH-4", "refund", "CHF", 80, REFUND_AT),
]
LINES = [("WR-1", "SKU-A", "GBP", 480.05, INSPECTED_AT), ("DC-2", "SKU-B", "EUR", 50, None)]
RATES = [
    (date(2026, 2, 1), "GBP", Decimal("1.10")),
    (date(2026, 2, 21), "GBP", Decimal("1.30")),  # after the inspection: not used
    (date(2026, 2, 10), "USD", Decimal("0.90")),  # the refund's own day
    (date(2026, 2, 11), "USD", Decimal("0.80")),
]


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set timezone = 'UTC'")
    publish(con, AS_OF, [WRONG, NOT_POSTED, DUPLICATE, OVER, CURRENCY, MISSING, UNMATCHED])
    apply_lifecycle(con)
    publish_money(con, MONEY, LINES)
    yield con
    con.close()


def by_rule(rows: list[dict]) -> dict[str, dict]:
    return {r["rule"]: r for r in rows}


def test_each_case_counts_its_money_and_goods_once_per_currency(con):
    publish_rates(con, RATES)
    report = build_report(con)
    rows = by_rule(report.rows)
    assert [tuple(r) for r in report.rows] == [REPORT_COLUMNS] * len(report.rows)
    # one case per return; the receipt without RMA is its own case
    assert rows["disposition_mismatch"]["case_id"] == rows["receipt_not_posted"]["case_id"]
    assert rows["duplicate_credit"]["case_id"] == rows["credit_amount_mismatch"]["case_id"]
    assert rows["unmatched_receipt"]["case_id"] == case_id_for(None, UNMATCHED["mismatch_id"])
    assert len({r["case_id"] for r in report.rows}) == 5
    # the +960.10 / -960.10 pair is 960.10 of goods, on the first of its rows only
    case = rows["disposition_mismatch"]["case_id"]
    goods = [r["goods_at_risk"] for r in report.rows if r["case_id"] == case]
    assert sorted(g for g in goods if g is not None) == [Decimal("960.10")]
    assert rows["disposition_mismatch"]["currency"] == rows["receipt_not_posted"]["currency"]
    # the second credit note: 59.50 (the larger exposure), not 59.50 + 50
    dc = [r for r in report.rows if r["rma_number"] == "DC-2"]
    assert [r["money_at_risk"] for r in dc if r["money_at_risk"] is not None] == [Decimal("59.50")]
    assert dc[0]["money_at_risk"] == Decimal("59.50")  # the first row of its case
    # currency_mismatch: the refund, in the refund's currency
    assert (rows["currency_mismatch"]["currency"], rows["currency_mismatch"]["money_at_risk"]) == (
        "USD",
        Decimal("70.00"),
    )
    assert rows["unmatched_receipt"]["currency"] is None
    # totals per currency: the sums of the columns, never across currencies
    assert report.totals_by_currency == {
        "CHF": {"money_at_risk": Decimal("80.00"), "goods_at_risk": 0, "cases": 1, "rows": 1},
        "EUR": {"money_at_risk": Decimal("59.50"), "goods_at_risk": 0, "cases": 1, "rows": 2},
        "GBP": {"money_at_risk": 0, "goods_at_risk": Decimal("960.10"), "cases": 1, "rows": 2},
        "USD": {"money_at_risk": Decimal("70.00"), "goods_at_risk": 0, "cases": 1, "rows": 1},
    }


def test_company_currency_uses_the_latest_rate_on_or_before_the_date_never_a_guess(con):
    publish_rates(con, RATES)
    report = build_report(con)
    rows = by_rule(report.rows)
    assert rows["currency_mismatch"]["money_at_risk_company"] == Decimal("63.00")  # 70 x 0.90
    assert rows["credit_amount_mismatch"]["money_at_risk_company"] == Decimal("59.50")  # EUR
    assert rows["refund_without_credit"]["money_at_risk_company"] is None  # no CHF rate
    company = report.totals_company
    assert company["currency"] == "EUR"
    assert company["money_at_risk"] == Decimal("122.50")  # 63.00 + 59.50; CHF left out
    assert company["goods_at_risk"] == Decimal("1056.11")  # 960.10 x 1.10 (rate of 2026-02-01)
    assert company["not_converted"] == {"money_at_risk": ["CHF"]}

    rates = {"USD": ([date(2026, 2, 10)], [Decimal("0.9")])}
    assert rate_on(rates, "USD", date(2026, 2, 9), "EUR") is None  # before the first rate
    assert rate_on(rates, "USD", datetime(2026, 2, 10, 23, 59, tzinfo=UTC), "EUR") == Decimal("0.9")
    assert rate_on(rates, "EUR", None, "EUR") == 1
    assert rate_on(rates, "USD", date(2026, 3, 1), None) is None  # no company currency


def test_no_rates_means_no_company_figures_and_no_totals_company(con):
    report = build_report(con)
    assert report.totals_company is None
    assert all(r["money_at_risk_company"] is None for r in report.rows)
    data = json.loads(render(report, "json"))
    assert set(data) == {"rows", "totals_by_currency"}


def test_json_shape(con):
    publish_rates(con, RATES)
    data = json.loads(render(build_report(con), "json"))
    assert set(data) == {"rows", "totals_by_currency", "totals_company"}
    assert all(list(r) == list(REPORT_COLUMNS) for r in data["rows"])
    assert data["totals_by_currency"]["GBP"] == {
        "money_at_risk": "0",
        "goods_at_risk": "960.10",
        "cases": 1,
        "rows": 2,
    }
    assert data["totals_company"]["money_at_risk"] == "122.50"
    assert set(data["totals_by_currency"]) == {"CHF", "EUR", "GBP", "USD"}


def test_actions_descriptions_adjustments_and_notes(con):
    older, newer = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    for adjustment, status, at in (("adj-old", "rejected", older), ("adj-new", "approved", newer)):
        con.execute(
            "insert into writeback.adjustments (adjustment_id, idempotency_key, mismatch_id, "
            "rule, action, payload, status, created_at, updated_at) "
            "values (?, ?, ?, 'receipt_not_posted', 'stock_move', '{}', ?, ?, ?)",
            [adjustment, "key-" + adjustment, NOT_POSTED["mismatch_id"], status, at, at],
        )
    rows = by_rule(build_report(con).rows)
    posted = rows["receipt_not_posted"]
    assert (posted["adjustment_id"], posted["adjustment_status"]) == ("adj-new", "approved")
    # the planned adjustment and where it stands; without one, what the rule calls for
    assert rows["receipt_not_posted"]["suggested_action"] == (
        "post the return shipment for 2 units into WH-C-RFB (approved, waits for the push)"
    )
    assert suggested_action(NOT_POSTED) == "post the return shipment for 2 units into WH-C-RFB"
    credit = {"adjustment_id": "adj-1", "status": "planned", "action": "create_credit_note"}
    credit |= {"amount": Decimal("80"), "currency": "CHF"}
    assert suggested_action(MISSING, None, credit) == (
        "issue a credit note for 80.00 CHF (waits for a person: returnsync approve adj-1)"
    )
    move = {"adjustment_id": "adj-2", "status": "sent", "action": "internal_move", "quantity": 2}
    assert suggested_action(WRONG, None, move) == (
        "move the 2 units posted into WH-C-SCR to where they were inspected (sent to the ERP)"
    )
    rejected = {**move, "status": "rejected"}  # a rejected adjustment: what the rule calls for
    assert suggested_action(WRONG, None, rejected).startswith("needs a person: 2 units posted")
    assert rows["duplicate_credit"]["suggested_action"].startswith("needs a person: credited twice")
    assert rows["refund_without_credit"]["suggested_action"] == "issue a credit note for 80.00 CHF"
    assert rows["credit_amount_mismatch"]["suggested_action"] == (
        "needs a person: credited 59.50 EUR more than the channel refunded"
    )
    from pipelines.lib.recon.catalog import by_name

    catalog = by_name()
    assert all(r["rule_description"] == catalog[r["rule"]].description for r in rows.values())
    short = {**mismatch("posted_qty_mismatch", "X", "S", location="WH-E-STO"), "qty_delta": -1}
    assert suggested_action(short) == "post the return shipment for 1 unit more into WH-E-STO"


def test_new_text_columns_are_formula_safe_in_csv(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set timezone = 'UTC'")
    hostile = mismatch(
        "refund_without_credit", "=HYPERLINK(1)", expected="80.0000", actual="0", amount_delta=-80
    )
    location = mismatch(
        "receipt_not_posted", "@R", "+SKU", location="-LOC", expected="1", qty_delta=-1,
        amount_delta=-5,
    )  # fmt: skip
    publish(con, AS_OF, [hostile, location])
    apply_lifecycle(con)
    publish_money(
        con,
        [("=HYPERLINK(1)", "refund", "=X", 80, REFUND_AT), ("@R", "return", "@Y", None, None)],
        [("@R", "+SKU", "-Z", 5, INSPECTED_AT)],
    )
    con.execute(
        "alter table recon.mismatches add column if not exists acknowledgement_note varchar"
    )
    con.execute(
        "update recon.mismatches set acknowledgement_note = '=cmd|x', "
        "status = 'acknowledged', acknowledged_by = '+me'"
    )
    text = render(build_report(con, status="acknowledged"), "csv")
    rows = {r["rule"]: r for r in csv.DictReader(io.StringIO(text))}
    money, stock = rows["refund_without_credit"], rows["receipt_not_posted"]
    assert (money["case_id"].startswith("case-"), money["currency"]) == (True, "'=X")
    assert money["rma_number"] == "'=HYPERLINK(1)"
    assert money["money_at_risk"] == "80.00"  # a number stays one
    assert money["amount_delta"] == "-80.0000"
    assert (stock["currency"], stock["location"], stock["sku"]) == ("'-Z", "'-LOC", "'+SKU")
    assert stock["goods_at_risk"] == "5.00"
    assert stock["suggested_action"] == "post the return shipment for 1 unit into -LOC"
    assert money["acknowledgement_note"] == "'=cmd|x" and money["acknowledged_by"] == "'+me"
    con.close()


def test_planner_auto_approve_limit_is_per_currency(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema seeds")
    con.execute(
        f"create table seeds.recon_settings as select * from read_csv("
        f"'{DBT_PROJECT_DIR / 'seeds' / 'recon_settings.csv'}', all_varchar=true)"
    )
    con.execute(
        "update seeds.recon_settings set value = '100' "
        "where currency = 'GBP' and setting = 'auto_approve_amount'"
    )
    limits = read_limits(con)
    assert limits.amount == Decimal("250") and limits.amount_for("GBP") == Decimal("100")
    assert limits.amount_for("JPY") == limits.amount  # no row of its own: the default

    action = getattr(plan, "CREDIT_ACTIONS", ("credit_note",))[0]  # the planner's vocabulary

    def credit(amount: str, currency: str) -> Proposal:
        return Proposal(
            "m", "refund_without_credit", "R", None, action=action, payload={},
            amount=Decimal(amount), currency=currency,
        )  # fmt: skip

    assert needs_approval(credit("150", "GBP"), limits)
    assert not needs_approval(credit("150", "EUR"), limits)
    assert not needs_approval(credit("150", "GBP"), Limits())  # defaults: 250 everywhere
    con.close()
