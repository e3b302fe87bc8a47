"""The run summary's money and goods at risk come from the report cache when it is current
(issue 24: `returnsync run` reads them before and after the job; computing every open row twice
grows with history) and are computed as the report computes them when it is not: the printed
summary is the same either way."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.lib import summary
from pipelines.lib.recon.lifecycle import acknowledge, apply_lifecycle
from pipelines.lib.recon.report import refresh_open_report
from pipelines.lib.warehouse import connection
from pipelines.settings import Settings
from tests.recon.recon_helpers import mismatch, publish, publish_money, publish_rates

T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 2, tzinfo=UTC)
SHORT = mismatch("credit_amount_mismatch", "R-1", expected="100", actual="90", amount_delta=-10)
MISSING = mismatch("refund_without_credit", "R-2", expected="30", actual="0", amount_delta=-30)
FRANCS = mismatch("refund_without_credit", "R-4", expected="7.5", actual="0", amount_delta=-7.5)
STOCK = mismatch(
    "receipt_not_posted", "R-3", "SKU-A", location="WH-E-STO", expected="2", qty_delta=-2,
    amount_delta=-24,
)  # fmt: skip
MONEY = [
    ("R-1", "refund", "EUR", 100, T1),
    ("R-1", "credit", "EUR", 90, T1),
    ("R-2", "refund", "USD", 30, T1),
    ("R-3", "return", "GBP", None, None),
    ("R-4", "refund", "CHF", 7.5, T1),  # no rate for CHF: not in the company currency's total
]
LINES = [("R-3", "SKU-A", "GBP", 12, T1)]


def _printed(settings: Settings, before: dict, use_cache: bool, monkeypatch) -> list[str]:
    """The summary's lines, with the totals from the cache allowed or not."""
    computed = summary.open_totals
    with monkeypatch.context() as patch:
        patch.setattr(summary, "open_totals", lambda con: computed(con, use_cache=use_cache))
        lines: list[str] = []
        summary.print_summary(settings, lines.append, before=before)
    return lines


def _refresh(settings: Settings) -> None:
    """What the report assets do at the end of every run."""
    with connection(settings.db_path) as con:
        refresh_open_report(con)


def test_totals_from_a_current_cache_and_computed_after_an_acknowledge(tmp_path, monkeypatch):
    settings = Settings.from_env(env={}, base_dir=tmp_path, db_path=tmp_path / "w.duckdb")
    with connection(settings.db_path) as con:
        publish(con, T1, [SHORT, STOCK, FRANCS])
        apply_lifecycle(con)
        publish_money(con, MONEY, LINES)
        publish_rates(con, [(T1.date(), "USD", 0.9), (T1.date(), "GBP", 1.2)])
    # no cache yet (no report asset ran): computed
    assert summary.snapshot(settings)["totals_from"] == "computed"
    _refresh(settings)
    before = summary.snapshot(settings)
    assert before["totals_from"] == "cache"
    with connection(settings.db_path, read_only=True) as con:
        computed = summary.open_totals(con, use_cache=False)
        assert summary.open_totals(con) == (*computed[:2], "cache")
        assert repr(summary.open_totals(con)[:2]) == repr(computed[:2])  # the same digits
        # read-only, and nothing left behind
        assert (
            con.execute("select count(*) from duckdb_tables() where temporary").fetchone()[0] == 0
        )

    with connection(settings.db_path) as con:  # the next run: R-3 posted, R-2 refunded
        publish(con, T2, [SHORT, MISSING, FRANCS])
        apply_lifecycle(con)
    # the cache is a run behind: computed, never the stale cache's totals
    assert summary.snapshot(settings)["totals_from"] == "computed"
    stale = _printed(settings, before, True, monkeypatch)
    _refresh(settings)
    assert summary.snapshot(settings)["totals_from"] == "cache"
    from_cache = _printed(settings, before, True, monkeypatch)
    assert from_cache == stale == _printed(settings, before, False, monkeypatch)
    text = "\n".join(from_cache)
    assert "mismatches: 1 opened, 1 resolved" in text
    assert "money at risk: +30.00 USD" in text
    assert "goods at risk: -24.00 GBP" in text
    assert "money at risk (open, per currency): 7.50 CHF, 10.00 EUR, 30.00 USD" in text
    assert "in EUR (company currency): money at risk 37.00, goods at risk 0 (no rate for CHF" in (
        text
    )

    # `acknowledge` changes the open rows and does not refresh the cache
    with connection(settings.db_path) as con:
        assert acknowledge(con, MISSING["mismatch_id"], by="finance")
    after_ack = summary.snapshot(settings)
    assert after_ack["totals_from"] == "computed"
    assert "USD" not in after_ack["totals"]
    assert _printed(settings, before, True, monkeypatch) == _printed(
        settings, before, False, monkeypatch
    )
    _refresh(settings)
    assert summary.snapshot(settings)["totals"] == after_ack["totals"]
