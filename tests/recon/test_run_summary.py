"""The run summary says what the run changed (DESIGN §11): files and rows new, mismatches opened
and resolved, money and goods at risk per currency; then the totals, per currency."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.lib.recon.lifecycle import apply_lifecycle
from pipelines.lib.summary import print_summary, snapshot
from pipelines.lib.warehouse import connection
from pipelines.settings import Settings
from tests.recon.recon_helpers import mismatch, publish, publish_money, publish_rates

T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 2, tzinfo=UTC)
SHORT = mismatch("credit_amount_mismatch", "R-1", expected="100", actual="90", amount_delta=-10)
MISSING = mismatch("refund_without_credit", "R-2", expected="30", actual="0", amount_delta=-30)
STOCK = mismatch(
    "receipt_not_posted", "R-3", "SKU-A", location="WH-E-STO", expected="2", qty_delta=-2,
    amount_delta=-24,
)  # fmt: skip
MONEY = [
    ("R-1", "refund", "EUR", 100, T1),
    ("R-1", "credit", "EUR", 90, T1),
    ("R-2", "refund", "USD", 30, T1),
    ("R-3", "return", "GBP", None, None),
]
LINES = [("R-3", "SKU-A", "GBP", 12, T1)]


def test_summary_says_what_changed_then_the_totals_per_currency(tmp_path):
    settings = Settings.from_env(env={}, base_dir=tmp_path, db_path=tmp_path / "w.duckdb")
    with connection(settings.db_path) as con:
        publish(con, T1, [SHORT, STOCK])
        apply_lifecycle(con)
        publish_money(con, MONEY, LINES)
        publish_rates(con, [(T1.date(), "USD", 0.9)])
    before = snapshot(settings)
    with connection(settings.db_path) as con:  # the next run: R-3 posted, R-2 refunded
        publish(con, T2, [SHORT, MISSING])
        apply_lifecycle(con)
    lines: list[str] = []
    data = print_summary(settings, lines.append, before=before)
    text = "\n".join(lines)
    assert text.index("== this run") < text.index("== returnsync summary")
    assert "mismatches: 1 opened, 1 resolved" in text
    assert "money at risk: +30.00 USD" in text
    assert "goods at risk: -24.00 GBP" in text
    assert "money at risk (open, per currency): 10.00 EUR, 30.00 USD" in text
    assert "goods at risk (open, per currency): none" in text
    assert "in EUR (company currency): money at risk 37.00, goods at risk 0" in text
    assert (data["changes"]["opened"], data["changes"]["resolved"]) == (1, 1)
