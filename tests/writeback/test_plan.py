"""Planning adjustments from a hand-made recon.mismatches and marts (no ERP needed)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from pipelines.lib.warehouse import connect
from pipelines.lib.writeback import (
    DecisionError,
    Limits,
    approve,
    idempotency_key,
    plan_adjustments,
    read_limits,
    reject,
)
from tests.writeback.helpers import (
    ReturnSpec,
    add_mismatch,
    add_return,
    adjustments,
    make_warehouse,
    open_exceptions,
    set_mismatch,
)


@pytest.fixture
def con(tmp_path):
    make_warehouse(tmp_path / "w.duckdb")
    con = connect(tmp_path / "w.duckdb")
    yield con
    con.close()


@pytest.fixture
def landscape(con):
    """One open mismatch of each interesting kind; returns their ids by name."""
    add_return(con, ReturnSpec("RMA-1", "P-1001", 9001, 9101, 11))
    add_return(con, ReturnSpec("RMA-2", "P-1002", 9002, 9102, 11, Decimal(20), Decimal("5.50")))
    add_return(
        con, ReturnSpec("RMA-3", "P-1003", 9003, 9103, 12, Decimal(1), channel_refund=Decimal(89))
    )
    add_return(con, ReturnSpec("RMA-8", "P-1002", 9008, 9108, 12, channel_refund=Decimal(50)))
    add_return(con, ReturnSpec("RMA-9", "P-1004", 9009, 9109, 12, Decimal(3), Decimal(20)))
    add_return(
        con,
        ReturnSpec(
            "RMA-4",
            "P-1004",
            9004,
            9104,
            12,
            Decimal(2),
            Decimal("400"),
            erp_credited_qty=Decimal(1),
            channel_refund=Decimal("800"),
        ),
    )
    add_return(con, ReturnSpec("RMA-5", "P-1005", 9005, 9105, 12, erp_credited_qty=Decimal(2)))
    add_return(con, ReturnSpec("RMA-6", "P-1006", 9006, 9106, 12, erp_credited_qty=Decimal(2)))
    add_return(con, ReturnSpec("RMA-7", "P-1001", None, None, None))
    ids = {
        "stock_small": add_mismatch(
            con,
            "receipt_not_posted",
            "RMA-1",
            "P-1001",
            location="WH-E-STO",
            qty_delta="-2",
            open_return_shipment_id=77,
        ),
        "stock_big": add_mismatch(
            con, "posted_qty_mismatch", "RMA-2", "P-1002", location="WH-W-RFB", qty_delta="-12"
        ),
        "over_posted": add_mismatch(
            con, "posted_qty_mismatch", "RMA-1", "P-1001", location="WH-E-SCR", qty_delta="1"
        ),
        "no_credit": add_mismatch(
            con, "refund_without_credit", "RMA-3", amount_delta="-89.00", draft_credit_note_id=55
        ),
        "partial_refund": add_mismatch(
            con, "refund_without_credit", "RMA-8", amount_delta="-50.00", draft_credit_note_id=56
        ),
        # 3 units inspected into WH-E-SCR, the ERP posted 2 of them to WH-E-STO
        "misplaced": add_mismatch(
            con,
            "disposition_mismatch",
            "RMA-9",
            "P-1004",
            location="WH-E-STO",
            qty_delta="2",
            qty_posted="2",
            move_to=("WH-E-SCR", "3"),
        ),
        "short_at_scrap": add_mismatch(
            con,
            "receipt_not_posted",
            "RMA-9",
            "P-1004",
            location="WH-E-SCR",
            qty_delta="-3",
            move_to=("WH-E-SCR", "3"),
        ),
        "short_big": add_mismatch(con, "credit_amount_mismatch", "RMA-4", amount_delta="-400.00"),
        "over_credit": add_mismatch(con, "credit_amount_mismatch", "RMA-5", amount_delta="4.95"),
        "all_credited": add_mismatch(con, "credit_amount_mismatch", "RMA-6", amount_delta="-8.90"),
        "duplicate": add_mismatch(con, "duplicate_credit", "RMA-5", "P-1005", qty_delta="1"),
        "no_erp_order": add_mismatch(con, "refund_without_credit", "RMA-7", amount_delta="-10"),
        "resolved": add_mismatch(
            con,
            "receipt_not_posted",
            "RMA-2",
            "P-1002",
            location="WH-W-STO",
            qty_delta="-1",
            status="resolved",
        ),
    }
    return ids


def test_plans_the_right_actions_amounts_quantities_and_statuses(con, landscape):
    summary = plan_adjustments(con)
    adj = adjustments(con)
    assert set(adj) == {
        landscape[k]
        for k in (
            "stock_small",
            "stock_big",
            "no_credit",
            "short_big",
            "misplaced",
            "short_at_scrap",
        )
    }
    assert summary.planned == 6 and summary.auto_approved == 4 and summary.waiting == 2

    small = adj[landscape["stock_small"]]
    assert (small["action"], small["quantity"], small["status"], small["approved_by"]) == (
        "finish_return_shipment",  # CDC shows the return's own shipment unfinished
        Decimal("2.000"),
        "approved",
        "auto",
    )
    payload = json.loads(small["payload"])
    assert payload == {
        "return_line_ref": 9101,
        "product_code": "P-1001",
        "quantity": "2",
        "to_location_code": "WH-E-STO",
        "description": "returnsync receipt_not_posted RMA-1 P-1001",
    }
    assert small["amount"] == Decimal("178.0000")  # the value moved, informative
    assert small["idempotency_key"] == idempotency_key(
        landscape["stock_small"], "finish_return_shipment", payload
    )

    big = adj[landscape["stock_big"]]
    assert (big["action"], big["quantity"], big["status"], big["approved_by"]) == (
        "create_return_shipment",  # none left to finish
        Decimal(12),
        "planned",
        None,
    )
    assert "waits for a person" in big["decided_reason"]

    credit = adj[landscape["no_credit"]]
    assert (credit["action"], credit["amount"], credit["currency"], credit["status"]) == (
        "post_draft_credit_note",
        Decimal("89.0000"),
        "EUR",
        "approved",
    )
    assert json.loads(credit["payload"]) == {
        "return_line_ref": 9103,
        "party": 12,
        "currency_code": "EUR",
        "lines": [
            {"return_line_ref": 9103, "product_code": "P-1003", "quantity": "1", "unit_price": "89"}
        ],
        "expected_total": "89",  # the credit's total incl. tax: what the channel refunded
        "tolerance": "0.01",
        "description": "returnsync refund_without_credit RMA-3",
    }
    short = adj[landscape["short_big"]]
    assert (short["action"], short["amount"], short["quantity"], short["status"]) == (
        "create_credit_note",  # no draft credit note left: the uncredited unit at its price
        Decimal(400),
        Decimal(1),
        "planned",  # over 250
    )
    assert json.loads(short["payload"])["lines"] == [
        {"return_line_ref": 9104, "product_code": "P-1004", "quantity": "1", "unit_price": "400"}
    ]
    moved = adj[landscape["misplaced"]]
    assert (moved["action"], moved["quantity"], moved["status"]) == (
        "internal_move",
        Decimal(2),
        "approved",
    )
    assert json.loads(moved["payload"]) == {
        "return_line_ref": 9109,
        "product_code": "P-1004",
        "quantity": "2",
        "from_location_code": "WH-E-STO",
        "to_location_code": "WH-E-SCR",
        "description": "returnsync disposition_mismatch RMA-9 P-1004",
    }
    # the internal move brings 2 of the 3 units short at WH-E-SCR: the third is received
    scrap = adj[landscape["short_at_scrap"]]
    assert (scrap["action"], scrap["quantity"]) == ("create_return_shipment", Decimal(1))

    exceptions = open_exceptions(con)
    assert set(exceptions) == {
        landscape[k]
        for k in (
            "over_posted",
            "over_credit",
            "all_credited",
            "duplicate",
            "no_erp_order",
            "partial_refund",
        )
    }
    assert "worth 178 EUR" in exceptions[landscape["partial_refund"]]["reason"]
    assert "more posted than inspected" in exceptions[landscape["over_posted"]]["reason"]
    assert "credited more" in exceptions[landscape["over_credit"]]["reason"]
    assert "duplicate_credit" in exceptions[landscape["all_credited"]]["reason"]
    assert "no ERP return order" in exceptions[landscape["no_erp_order"]]["reason"]
    assert all(e["adjustment_id"] is None for e in exceptions.values())


def test_planning_again_adds_nothing(con, landscape):
    plan_adjustments(con)
    before = con.execute("select * from writeback.adjustments order by 1").fetchall()
    exc_before = con.execute("select * from writeback.exceptions order by 1").fetchall()
    again = plan_adjustments(con)
    assert (again.planned, again.unchanged, again.exceptions_opened) == (0, 6, 0)
    assert con.execute("select * from writeback.adjustments order by 1").fetchall() == before
    assert con.execute("select * from writeback.exceptions order by 1").fetchall() == exc_before


def test_a_changed_mismatch_supersedes_its_waiting_adjustment(con, landscape):
    plan_adjustments(con)
    old = adjustments(con)[landscape["stock_big"]]
    set_mismatch(con, landscape["stock_big"], qty_delta=Decimal(-11))
    summary = plan_adjustments(con)
    assert (summary.planned, summary.superseded) == (1, 1)
    rows = con.execute(
        "select adjustment_id, status, quantity, approved_by from writeback.adjustments "
        "where mismatch_id = ? order by created_at",
        [landscape["stock_big"]],
    ).fetchall()
    assert rows[0][:2] == (old["adjustment_id"], "rejected") and rows[0][3] == "auto"
    assert rows[1][1:] == ("planned", Decimal(11), None)


def test_waiting_adjustments_of_resolved_mismatches_are_rejected_and_exceptions_closed(
    con, landscape
):
    plan_adjustments(con)
    set_mismatch(con, landscape["short_big"], status="resolved")
    set_mismatch(con, landscape["duplicate"], status="resolved")
    summary = plan_adjustments(con)
    assert summary.obsolete == 1 and summary.exceptions_closed == 1
    short = adjustments(con)[landscape["short_big"]]
    assert (short["status"], short["approved_by"]) == ("rejected", "auto")
    assert landscape["duplicate"] not in open_exceptions(con)


def test_limits_come_from_the_seed(con, landscape):
    limits = read_limits(con)
    assert (limits.amount, limits.quantity) == (Limits().amount, Limits().quantity) == (250, 10)
    assert limits.amount_for("GBP") == Decimal(250)  # the seed's row for GBP (per currency)
    con.execute("update seeds.recon_settings set value = 500 where setting = 'auto_approve_amount'")
    assert read_limits(con).amount == Decimal(500)
    plan_adjustments(con)
    assert adjustments(con)[landscape["short_big"]]["status"] == "approved"


def test_approve_and_reject_are_recorded_with_who_and_when(con, landscape):
    plan_adjustments(con)
    adj = adjustments(con)
    big, short = adj[landscape["stock_big"]], adj[landscape["short_big"]]
    assert approve(con, big["adjustment_id"], by="alice") == "approved"
    assert reject(con, short["adjustment_id"], by="bob", reason="customer fraud") == "rejected"
    adj = adjustments(con)
    assert adj[landscape["stock_big"]]["approved_by"] == "alice"
    assert adj[landscape["stock_big"]]["approved_at"] is not None
    rejected = adj[landscape["short_big"]]
    assert (rejected["status"], rejected["approved_by"], rejected["decided_reason"]) == (
        "rejected",
        "bob",
        "customer fraud",
    )
    with pytest.raises(DecisionError, match="is rejected"):
        approve(con, short["adjustment_id"], by="alice")
    with pytest.raises(DecisionError, match="no adjustment"):
        approve(con, "adj-nope", by="alice")
    with pytest.raises(DecisionError, match="--by"):
        approve(con, big["adjustment_id"], by=" ")
    with pytest.raises(DecisionError, match="reserved"):
        reject(con, big["adjustment_id"], by="auto")
    # a rejected adjustment is never planned again for the same content
    assert plan_adjustments(con).planned == 0


def test_an_adjustment_a_push_already_tried_is_never_superseded(con, landscape):
    plan_adjustments(con)
    tried = adjustments(con)[landscape["stock_small"]]
    con.execute(
        "insert into writeback.attempts values (?, 1, current_timestamp, 'transient_error', 'x')",
        [tried["adjustment_id"]],
    )
    set_mismatch(con, landscape["stock_small"], qty_delta=Decimal(-3))
    summary = plan_adjustments(con)
    assert summary.planned == 0 and summary.superseded == 0
    assert adjustments(con)[landscape["stock_small"]]["adjustment_id"] == tried["adjustment_id"]


def test_a_taxed_refund_is_planned_as_the_units_with_their_taxes(con):
    """The channel refunds taxes included (2 x 40.00 + 19 % = 95.20) and an untaxed line at its
    price (33.30): both are the uncredited units, credited with the taxes their sale lines carry
    (the adapter checks the total incl. tax in the ERP). A refund short of the units' value
    before tax (60.00 for 80.00 of goods) is a partial refund or a fee: a person decides."""
    add_return(con, ReturnSpec("RMA-T", "P-1001", 9201, 9301, 21, Decimal(2), Decimal("40.00"),
                               channel_refund=Decimal("95.20")))  # fmt: skip
    add_return(con, ReturnSpec("RMA-U", "P-1002", 9202, 9302, 21, Decimal(1), Decimal("33.30"),
                               channel_refund=Decimal("33.30")))  # fmt: skip
    add_return(con, ReturnSpec("RMA-P", "P-1003", 9203, 9303, 21, Decimal(2), Decimal("40.00"),
                               channel_refund=Decimal("60.00")))  # fmt: skip
    taxed = add_mismatch(
        con, "refund_without_credit", "RMA-T", amount_delta="-95.20", draft_credit_note_id=61
    )
    untaxed = add_mismatch(con, "refund_without_credit", "RMA-U", amount_delta="-33.30")
    partial = add_mismatch(
        con, "refund_without_credit", "RMA-P", amount_delta="-60.00", draft_credit_note_id=63
    )
    plan_adjustments(con)
    adj = adjustments(con)
    assert set(adj) == {taxed, untaxed}
    t = adj[taxed]
    assert (t["action"], t["amount"], t["quantity"], t["currency"]) == (
        "post_draft_credit_note",
        Decimal("95.2000"),  # what finance sees and the auto-approve limit reads: incl. tax
        Decimal(2),
        "EUR",
    )
    payload = json.loads(t["payload"])
    assert payload["lines"] == [
        {"return_line_ref": 9301, "product_code": "P-1001", "quantity": "2", "unit_price": "40"}
    ]  # real units at the line's unit price (before tax: Tryton adds the line's taxes)
    assert (payload["expected_total"], payload["tolerance"]) == ("95.2", "0.01")
    u = adj[untaxed]
    assert (u["action"], u["amount"]) == ("create_credit_note", Decimal("33.3000"))
    assert json.loads(u["payload"])["expected_total"] == "33.3"
    reason = open_exceptions(con)[partial]["reason"]
    assert "worth 80 EUR" in reason and "before tax" in reason and "a person" in reason
