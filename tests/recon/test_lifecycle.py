"""The mismatch lifecycle on a real DuckDB: stable ids, resolution, reopening, acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from pipelines.lib.recon.lifecycle import acknowledge, apply_lifecycle, list_mismatches
from tests.recon.recon_helpers import mismatch, publish

T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 2, tzinfo=UTC)
T3 = datetime(2026, 3, 3, tzinfo=UTC)

NOT_POSTED = mismatch(
    "receipt_not_posted",
    "LR-1",
    "SKU-A",
    warehouse="WH-E",
    location="WH-E-STO",
    expected="2.000",
    actual="0.000",
    qty_delta=-2,
    amount_delta=-20,
)
NO_CREDIT = mismatch(
    "refund_without_credit", "LR-2", expected="50.0000", actual="0", amount_delta=-50
)


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set timezone = 'UTC'")
    yield con
    con.close()


def by_id(con, status="all"):
    return {r["mismatch_id"]: r for r in list_mismatches(con, status=status)}


def test_same_data_twice_gives_the_same_ids_and_keeps_first_seen(con):
    publish(con, T1, [NOT_POSTED, NO_CREDIT])
    first = apply_lifecycle(con)
    assert (first.opened, first.resolved, first.open_total) == (2, 0, 2)
    publish(con, T2, [NOT_POSTED, NO_CREDIT])
    second = apply_lifecycle(con)
    assert (second.opened, second.still_open, second.resolved) == (0, 2, 0)

    rows = by_id(con)
    assert set(rows) == {NOT_POSTED["mismatch_id"], NO_CREDIT["mismatch_id"]}
    for row in rows.values():
        assert row["status"] == "open"
        assert row["first_seen_at"] == T1
        assert row["last_seen_at"] == T2
        assert row["resolved_at"] is None
    assert str(rows[NOT_POSTED["mismatch_id"]]["qty_delta"]) == "-2.000"
    assert str(rows[NO_CREDIT["mismatch_id"]]["amount_delta"]) == "-50.0000"


def test_corrected_data_resolves_and_keeps_the_row_then_reopens(con):
    publish(con, T1, [NOT_POSTED, NO_CREDIT])
    apply_lifecycle(con)
    publish(con, T2, [NO_CREDIT])  # the stock posting was made in the ERP
    summary = apply_lifecycle(con)
    assert summary.resolved == 1

    assert set(by_id(con, "open")) == {NO_CREDIT["mismatch_id"]}
    resolved = by_id(con, "resolved")[NOT_POSTED["mismatch_id"]]
    assert resolved["resolved_at"] == T2
    assert resolved["last_seen_at"] == T1
    assert len(by_id(con, "all")) == 2  # never deleted

    publish(con, T3, [NOT_POSTED, NO_CREDIT])  # it comes back
    summary = apply_lifecycle(con)
    assert summary.reopened == 1
    again = by_id(con)[NOT_POSTED["mismatch_id"]]
    assert (again["status"], again["resolved_at"], again["first_seen_at"]) == ("open", None, T1)
    history = con.execute(
        "select status from recon.mismatch_history where mismatch_id = ? order by changed_at",
        [NOT_POSTED["mismatch_id"]],
    ).fetchall()
    assert [h[0] for h in history] == ["open", "resolved", "open"]


def test_acknowledgement_survives_reruns_until_resolved(con):
    publish(con, T1, [NOT_POSTED, NO_CREDIT])
    apply_lifecycle(con)
    assert acknowledge(con, NO_CREDIT["mismatch_id"], by="finance.ops", at=T1)
    assert not acknowledge(con, "no-such-id", by="finance.ops")

    publish(con, T2, [NOT_POSTED, NO_CREDIT])
    apply_lifecycle(con)
    row = by_id(con)[NO_CREDIT["mismatch_id"]]
    assert (row["status"], row["acknowledged_by"], row["last_seen_at"]) == (
        "acknowledged",
        "finance.ops",
        T2,
    )
    assert set(by_id(con, "open")) == {NOT_POSTED["mismatch_id"]}

    publish(con, T3, [NOT_POSTED])  # the credit note was issued
    apply_lifecycle(con)
    assert by_id(con)[NO_CREDIT["mismatch_id"]]["status"] == "resolved"


def test_an_empty_run_resolves_everything_and_an_explicit_as_of_wins(con):
    publish(con, T1, [NOT_POSTED])
    apply_lifecycle(con)
    publish(con, T2, [])
    summary = apply_lifecycle(con, as_of="2026-03-02T06:00:00Z")
    assert summary.resolved == 1 and summary.open_total == 0
    assert by_id(con)[NOT_POSTED["mismatch_id"]]["resolved_at"] == datetime(
        2026, 3, 2, 6, tzinfo=UTC
    )


def test_missing_dbt_tables_are_a_clear_error(con):
    with pytest.raises(LookupError, match="recon_run"):
        apply_lifecycle(con)
    with pytest.raises(LookupError, match=r"recon\.mismatches"):
        list_mismatches(duckdb.connect())
