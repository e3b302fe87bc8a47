"""Planning examines only what changed since the last planning, and writes what a full replan
writes (issue 24).

Two warehouses live through the same history, step by step, with the same planning times: in
one, planning keeps its state (`writeback.plan_state`) and examines only the open mismatches
whose inputs changed; in the other, the state is emptied before every planning, so every open
mismatch is examined, as the planner always did before. After every step the write-back tables
(every column) and the summaries must be the same. The history: changes arriving out of order
(a mismatch changed and changed back, an internal move's line changing the stock fix it
covers), a person's decisions, a push that sent an adjustment, a return resolved, the same
return reopened, a planning exception closed by hand, and new limits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import pytest

from pipelines.lib.warehouse import connect
from pipelines.lib.writeback import plan_adjustments
from tests.writeback.helpers import (
    ReturnSpec,
    add_mismatch,
    add_return,
    make_warehouse,
    set_mismatch,
)

T0 = datetime(2026, 11, 21, 8, tzinfo=UTC)
ID: dict[str, str] = {}


def _start(con: duckdb.DuckDBPyConnection) -> None:
    add_return(con, ReturnSpec("RMA-1", "P-1001", 9001, 9101, 11))
    add_return(con, ReturnSpec("RMA-2", "P-1002", 9002, 9102, 11, Decimal(20), Decimal("5.50")))
    add_return(
        con, ReturnSpec("RMA-3", "P-1003", 9003, 9103, 12, Decimal(1), channel_refund=Decimal(89))
    )
    add_return(con, ReturnSpec("RMA-5", "P-1005", 9005, 9105, 12, erp_credited_qty=Decimal(2)))
    add_return(con, ReturnSpec("RMA-9", "P-1004", 9009, 9109, 12, Decimal(3), Decimal(20)))
    ID["stock"] = add_mismatch(
        con, "receipt_not_posted", "RMA-1", "P-1001", location="WH-E-STO", qty_delta="-2",
        open_return_shipment_id=77,
    )  # fmt: skip
    ID["stock_big"] = add_mismatch(
        con, "posted_qty_mismatch", "RMA-2", "P-1002", location="WH-W-RFB", qty_delta="-12"
    )
    ID["credit"] = add_mismatch(
        con, "refund_without_credit", "RMA-3", amount_delta="-89.00", draft_credit_note_id=55
    )
    ID["duplicate"] = add_mismatch(con, "duplicate_credit", "RMA-5", "P-1005", qty_delta="1")
    # 3 units inspected into WH-E-SCR, the ERP posted 2 of them to WH-E-STO: the move covers
    # 2 of the 3 units the stock fix of the same line would post
    ID["misplaced"] = add_mismatch(
        con, "disposition_mismatch", "RMA-9", "P-1004", location="WH-E-STO", qty_delta="2",
        qty_posted="2", move_to=("WH-E-SCR", "3"),
    )  # fmt: skip
    ID["short_at_scrap"] = add_mismatch(
        con, "receipt_not_posted", "RMA-9", "P-1004", location="WH-E-SCR", qty_delta="-3",
        move_to=("WH-E-SCR", "3"),
    )  # fmt: skip


def _changed_and_back(con):
    set_mismatch(con, ID["stock_big"], qty_delta=Decimal(-11))


def _back(con):
    set_mismatch(con, ID["stock_big"], qty_delta=Decimal(-12))  # its first key again


def _move_holds_less(con):
    # the ERP now holds only 1 unit in the wrong place: the move covers 1, the stock fix posts 2
    add_mismatch(
        con, "disposition_mismatch", "RMA-9", "P-1004", location="WH-E-STO", qty_delta="1",
        qty_posted="1", move_to=("WH-E-SCR", "3"),
    )  # fmt: skip


def _sent_and_decided(con):
    con.execute(
        "update writeback.adjustments set status = 'sent', sent_at = ?, updated_at = ? "
        "where mismatch_id = ? and status = 'approved'",
        [T0 + timedelta(hours=3), T0 + timedelta(hours=3), ID["stock"]],
    )
    con.execute(
        "update writeback.adjustments set status = 'rejected', approved_by = 'bob', "
        "approved_at = ?, updated_at = ? where mismatch_id = ? and status = 'planned'",
        [T0 + timedelta(hours=3), T0 + timedelta(hours=3), ID["stock_big"]],
    )


def _resolved(con):
    # the sent document came back through ingestion: the return's mismatch resolves
    con.execute(
        "update recon.mismatches set status = 'resolved', resolved_at = ? where mismatch_id = ?",
        [T0 + timedelta(hours=4), ID["stock"]],
    )
    con.execute(
        "insert into recon.mismatch_history values (?, 'resolved', ?, 'recon')",
        [ID["stock"], T0 + timedelta(hours=4)],
    )
    set_mismatch(con, ID["credit"], status="open", amount_delta=Decimal("-80.00"))


def _reopened(con):
    # the return is short again after it resolved: a new fix may be planned
    con.execute(
        "update recon.mismatches set status = 'open', resolved_at = null, qty_delta = -1 "
        "where mismatch_id = ?",
        [ID["stock"]],
    )
    con.execute(
        "insert into recon.mismatch_history values (?, 'open', ?, 'recon')",
        [ID["stock"], T0 + timedelta(hours=5)],
    )


def _exception_closed_by_hand(con):
    con.execute(
        "update writeback.exceptions set status = 'closed', closed_reason = 'by hand' "
        "where mismatch_id = ?",
        [ID["duplicate"]],
    )


def _new_limits(con):
    con.execute("update seeds.recon_settings set value = 1 where setting = 'auto_approve_quantity'")
    add_return(con, ReturnSpec("RMA-6", "P-1006", 9006, 9106, 12, Decimal(5), Decimal(3)))
    add_mismatch(con, "receipt_not_posted", "RMA-6", "P-1006", location="WH-E-STO", qty_delta="-5")


def _nothing(con):
    pass


STEPS: list[tuple[str, Callable, int | None]] = [
    # (name, change, open mismatches the incremental planning must examine; None: not checked)
    ("first planning", _nothing, 6),
    ("no change", _nothing, 0),
    ("a mismatch changed", _changed_and_back, 1),
    ("changed back (out of order)", _back, 1),
    ("the move holds less: the stock fix it covers is examined too", _move_holds_less, 2),
    ("a push sent one, a person rejected one", _sent_and_decided, 2),
    ("a return resolved, another changed", _resolved, 1),
    ("the resolved return reopened", _reopened, 1),
    ("a planning exception closed by hand", _exception_closed_by_hand, 1),
    ("new limits and a new mismatch: everything examined", _new_limits, 7),
    ("nothing changed again", _nothing, 0),
]


def _table(con, table: str) -> list[tuple]:
    return con.execute(f"select * from {table} order by all").fetchall()


@pytest.fixture
def twins(tmp_path):
    cons = []
    for name in ("incremental", "full"):
        make_warehouse(tmp_path / f"{name}.duckdb")
        con = connect(tmp_path / f"{name}.duckdb")
        _start(con)
        cons.append(con)
    yield cons
    for con in cons:
        con.close()


def test_incremental_planning_writes_what_a_full_replan_writes(twins):
    incremental, full = twins
    for i, (name, change, examined) in enumerate(STEPS):
        now = T0 + timedelta(hours=i)
        change(incremental)
        change(full)
        if i:  # nothing known: every mismatch is examined
            full.execute("delete from writeback.plan_state")
        a = plan_adjustments(incremental, now=now)
        b = plan_adjustments(full, now=now)
        open_now = full.execute(
            "select count(*) from recon.mismatches where status = 'open'"
        ).fetchone()[0]
        assert b.examined == open_now, name
        if examined is not None:
            assert a.examined == examined, name
        assert {**a.as_dict(), "examined": 0} == {**b.as_dict(), "examined": 0}, name
        assert a.adjustment_ids == b.adjustment_ids, name
        for table in ("writeback.adjustments", "writeback.exceptions"):
            assert _table(incremental, table) == _table(full, table), f"{name}: {table}"
    # the history did what it says: a superseded, a sent, a replanned after reopening
    statuses = incremental.execute(
        "select mismatch_id, status, count(*) from writeback.adjustments group by all"
    ).fetchall()
    assert (ID["stock"], "sent", 1) in statuses
    assert (ID["stock"], "approved", 1) in statuses  # planned again after it reopened
    assert (ID["stock_big"], "rejected", 2) in statuses  # superseded by auto, then by bob
    reopened = incremental.execute(
        "select status from writeback.exceptions where mismatch_id = ?", [ID["duplicate"]]
    ).fetchall()
    assert reopened == [("open",)]  # planning reopens what a person closed without a fix


def test_an_unchanged_mismatch_is_not_examined_again(twins):
    con, _ = twins
    first = plan_adjustments(con, now=T0)
    assert first.examined == 6 and first.planned == 5
    before = _table(con, "writeback.adjustments")
    again = plan_adjustments(con, now=T0 + timedelta(hours=1))
    assert (again.examined, again.planned, again.unchanged) == (0, 0, first.planned)
    assert _table(con, "writeback.adjustments") == before
    # a candidate row of one mismatch changes (the ERP's draft credit note went away)
    con.execute(
        "update recon.adjustment_candidates set draft_credit_note_id = null where mismatch_id = ?",
        [ID["credit"]],
    )
    changed = plan_adjustments(con, now=T0 + timedelta(hours=2))
    assert (changed.examined, changed.planned, changed.superseded) == (1, 1, 1)
    new = con.execute(
        "select action from writeback.adjustments where mismatch_id = ? and status <> 'rejected'",
        [ID["credit"]],
    ).fetchall()
    assert new == [("create_credit_note",)]
