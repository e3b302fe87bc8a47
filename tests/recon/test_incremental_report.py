"""The open report kept current computes only the cases that changed, and gives what the report
computed from scratch gives (issue 24).

One warehouse goes through several increments (new and resolved mismatches, one reopened, an
as_of that goes back, money facts changed, an adjustment planned, an acknowledgement, rates
added); after each, the cache is refreshed and its CSV, totals, rule summaries and rows must equal
`build_report` over every open mismatch, and the refresh must have computed again exactly the
cases whose data changed (the others' rows are not rewritten).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from pipelines.lib.recon.catalog import CATALOG
from pipelines.lib.recon.lifecycle import apply_lifecycle, set_acknowledged
from pipelines.lib.recon.report import (
    CACHE,
    build_report,
    cached_cases,
    cached_csv,
    cached_rows,
    cached_rule_summary,
    cached_totals,
    refresh_open_report,
    rule_summary,
    to_csv,
)
from pipelines.lib.writeback.schema import ensure_tables
from tests.recon.recon_helpers import mismatch, publish, publish_money, publish_rates
from tests.recon.test_report_money import (
    CURRENCY,
    DUPLICATE,
    LINES,
    MISSING,
    MONEY,
    NOT_POSTED,
    OVER,
    RATES,
    UNMATCHED,
    WRONG,
)

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
LATE = mismatch(
    "refund_without_credit", "LT-6", expected="12.0000", actual="0", amount_delta=-12
)  # a new case in the second increment


def assert_same_as_from_scratch(con) -> None:
    full = build_report(con, status="open")
    assert cached_csv(con) == to_csv(full.rows)
    assert cached_totals(con) == (full.totals_by_currency, full.totals_company)
    assert cached_rule_summary(con) == rule_summary(full.rows)
    assert cached_cases(con) == len({r["case_id"] for r in full.rows})
    assert cached_rows(con, limit=3) == full.rows[:3]
    worst = [r for e in CATALOG for r in [x for x in full.rows if x["rule"] == e.rule][:1]]
    assert sorted(cached_rows(con, per_rule=1), key=lambda r: r["mismatch_id"]) == sorted(
        worst, key=lambda r: r["mismatch_id"]
    )


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set timezone = 'UTC'")
    ensure_tables(con)  # writeback.adjustments, as every warehouse has
    yield con
    con.close()


def _run(con, as_of: datetime, rows: list[dict]) -> None:
    publish(con, as_of, rows)
    apply_lifecycle(con)


def test_the_cached_report_equals_the_report_from_scratch_after_each_increment(con):
    publish_money(con, MONEY, LINES)
    _run(con, AS_OF, [WRONG, NOT_POSTED, DUPLICATE, OVER, CURRENCY, MISSING, UNMATCHED])
    first = refresh_open_report(con)
    assert (first.recomputed_cases, first.cases, first.rows) == (5, 5, 7)
    assert_same_as_from_scratch(con)

    again = refresh_open_report(con)  # nothing changed: nothing computed again
    assert (again.recomputed_cases, again.dropped_cases) == (0, 0)
    assert_same_as_from_scratch(con)

    # increment 1: CH-4 resolved (its case goes), LT-6 new, DC-2's credit changed
    con.execute("update recon.recon_return_money set amount = 120 where rma_number = 'DC-2' "
                "and side = 'credit'")  # fmt: skip
    publish_money(con, [("LT-6", "return", "EUR", None, None),
                        ("LT-6", "refund", "EUR", 12, AS_OF)])  # fmt: skip
    rows = [WRONG, NOT_POSTED, DUPLICATE, OVER, CURRENCY, UNMATCHED, LATE]
    _run(con, AS_OF + timedelta(hours=1), rows)
    step = refresh_open_report(con)
    # DC-2 (a fact) and LT-6 (new); the others' rows changed only their last_seen_at (the CSV
    # takes it from the mismatch), CH-4 is gone
    assert (step.recomputed_cases, step.dropped_cases, step.cases) == (2, 1, 5)
    assert_same_as_from_scratch(con)

    # increment 2: the same as_of again, CH-4 reopened (as it was), an adjustment for WR-1
    _run(con, AS_OF + timedelta(hours=1), [*rows, MISSING])
    con.execute(
        "insert into writeback.adjustments (adjustment_id, idempotency_key, mismatch_id, rule, "
        "rma_number, sku, action, payload, amount, quantity, currency, status, created_at, "
        "updated_at) values ('adj-1', 'k-1', ?, 'receipt_not_posted', 'WR-1', 'SKU-A', "
        "'create_return_shipment', '{}', null, 2, null, 'planned', ?, ?)",
        [NOT_POSTED["mismatch_id"], AS_OF, AS_OF],
    )
    step = refresh_open_report(con)
    assert (step.recomputed_cases, step.dropped_cases, step.cases) == (2, 0, 6)  # CH-4, WR-1
    assert_same_as_from_scratch(con)
    assert "waits for a person: returnsync approve adj-1" in cached_csv(con)

    # increment 3: DC-2's over-credit acknowledged (it leaves the open report); rates arrive
    set_acknowledged(con, [OVER["mismatch_id"]], by="finance", note="=1+1 checked", at=AS_OF)
    step = refresh_open_report(con)
    assert (step.recomputed_cases, step.dropped_cases) == (1, 0)  # DC-2 only
    assert_same_as_from_scratch(con)
    publish_rates(con, RATES, company="EUR")
    step = refresh_open_report(con)
    assert step.recomputed_cases == step.cases == 6  # the rates are every row's
    assert_same_as_from_scratch(con)

    # increment 4: as_of goes back an hour (a rerun), LT-6 resolved
    _run(con, AS_OF, [WRONG, NOT_POSTED, DUPLICATE, OVER, CURRENCY, UNMATCHED, MISSING])
    step = refresh_open_report(con)
    assert (step.recomputed_cases, step.dropped_cases) == (0, 1)
    assert_same_as_from_scratch(con)

    # another session time zone: every row computed again, and a moved as_of is then part of
    # each row's fingerprint (the CSV writes times in the session's zone)
    con.execute("set timezone = 'America/New_York'")
    assert refresh_open_report(con).recomputed_cases == 5
    assert_same_as_from_scratch(con)
    _run(con, AS_OF + timedelta(hours=3), [WRONG, NOT_POSTED, DUPLICATE, OVER, CURRENCY, MISSING])
    assert refresh_open_report(con).recomputed_cases == 4  # UN-5 resolved, the rest moved
    assert_same_as_from_scratch(con)


def test_untouched_cases_are_not_rewritten(con):
    publish_money(con, MONEY, LINES)
    _run(con, AS_OF, [WRONG, NOT_POSTED, DUPLICATE, OVER, CURRENCY, MISSING, UNMATCHED])
    refresh_open_report(con)
    before = dict(con.execute(f"select mismatch_id, rowid from {CACHE}").fetchall())
    con.execute("update recon.recon_line_money set currency = 'GBP' where rma_number = 'DC-2'")
    step = refresh_open_report(con)
    assert (step.recomputed_cases, step.recomputed_rows) == (1, 2)  # DC-2's two rows
    after = dict(con.execute(f"select mismatch_id, rowid from {CACHE}").fetchall())
    dc2 = {DUPLICATE["mismatch_id"], OVER["mismatch_id"]}
    assert {k: v for k, v in after.items() if k not in dc2} == {
        k: v for k, v in before.items() if k not in dc2
    }
    assert all(after[k] != before[k] for k in dc2)
    assert_same_as_from_scratch(con)
