"""Pushing adjustments to the real Tryton server: documents created once, whatever happens."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from pipelines.lib.erp import TrytonAdapter, document_kind
from pipelines.lib.stages import MARKER_ENV
from pipelines.lib.warehouse import connect, connection
from pipelines.lib.writeback import (
    RetryPolicy,
    approve,
    plan_adjustments,
    push_adjustments,
    reject,
)
from tests.fixtures.tryton_server import PROJECT_ROOT, create_sale, return_sale, sale_lines
from tests.writeback.helpers import (
    ReturnSpec,
    add_mismatch,
    add_return,
    adjustments,
    make_warehouse,
    open_exceptions,
)

pytestmark = pytest.mark.erp

RETURNSYNC = (sys.executable, "-c", "from pipelines.cli import main; main()")
FAST = RetryPolicy(max_attempts=3, backoff_seconds=0)
PRODUCTS = ("P-1001", "P-1002", "P-1003", "P-1004")


@pytest.fixture(scope="module")
def erp_return(tryton_server):
    """A confirmed sale of 20 x each of four products and its confirmed return order."""
    client = tryton_server.adapter().client
    sale_id = create_sale(client, "#WB-1", [(p, 20, Decimal("10.00")) for p in PRODUCTS])
    return_id = return_sale(client, sale_id, rma="RMA-WB-1")
    lines = {}
    products = dict(
        (r["id"], r["code"])
        for r in client.call("product.product", "search_read", [], 0, None, None, ["code"])
    )
    for line in sale_lines(client, return_id):
        lines[products[line["product"]]] = line["id"]
    (party,) = client.call("sale.sale", "read", [return_id], ["party"])
    return {"return": return_id, "lines": lines, "party": party["party"]}


@pytest.fixture
def db(tmp_path):
    return make_warehouse(tmp_path / "w.duckdb")


def _stock_case(con, erp_return, rma: str, sku: str, qty: str, location: str = "WH-E-STO"):
    add_return(
        con,
        ReturnSpec(
            rma,
            sku,
            erp_return["return"],
            erp_return["lines"][sku],
            erp_return["party"],
            Decimal(20),
            Decimal("10.00"),
        ),
    )
    return add_mismatch(con, "receipt_not_posted", rma, sku, location=location, qty_delta=f"-{qty}")


def _credit_case(con, erp_return, rma: str, sku: str, units: str):
    """The channel refunded `units` authorized units at 10.00 and the ERP has no credit."""
    amount = Decimal(units) * Decimal("10.00")
    add_return(
        con,
        ReturnSpec(
            rma,
            sku,
            erp_return["return"],
            erp_return["lines"][sku],
            erp_return["party"],
            Decimal(units),
            Decimal("10.00"),
            channel_refund=amount,
        ),
    )
    return add_mismatch(con, "refund_without_credit", rma, amount_delta=f"-{amount}")


def _count(adapter: TrytonAdapter, action: str, key: str) -> int:
    model = {
        "credit_note": "account.invoice",
        "return_shipment": "stock.shipment.out.return",
        "stock_move": "stock.shipment.internal",
    }[document_kind(action)]
    return len(adapter.client.call(model, "search", [("reference", "=", key)], 0, None, None))


def _plan(db) -> dict[str, dict]:
    with connection(db) as con:
        plan_adjustments(con)
        return adjustments(con)


def test_push_creates_the_documents_and_pushing_again_creates_nothing(
    db, erp_return, tryton_adapter
):
    with connection(db) as con:
        stock = _stock_case(con, erp_return, "RMA-P1", "P-1001", "2", "WH-E-RFB")
        credit = _credit_case(con, erp_return, "RMA-P2", "P-1002", "2")
    adj = _plan(db)
    summary = push_adjustments(db, tryton_adapter, policy=FAST)
    assert (summary.created, summary.found, summary.exceptions) == (2, 0, 0), summary.results

    sent = adjustments(connect(db, read_only=True))
    move_key, credit_key = adj[stock]["idempotency_key"], adj[credit]["idempotency_key"]
    shipment = tryton_adapter.find_document("return_shipment", move_key)
    assert shipment.model == "stock.shipment.out.return"
    assert shipment.state == "done" and len(shipment.line_ids) == 2  # received, then put away
    moves = tryton_adapter.client.call(
        "stock.move",
        "read",
        list(shipment.line_ids),
        ["quantity", "origin", "to_location", "state"],
    )
    codes = {
        r["id"]: r["code"]
        for r in tryton_adapter.client.call(
            "stock.location", "read", [m["to_location"] for m in moves], ["code"]
        )
    }
    line = f"sale.line,{erp_return['lines']['P-1001']}"
    assert sorted(
        (m["quantity"], m["state"], codes[m["to_location"]], m["origin"]) for m in moves
    ) == [
        (2.0, "done", "WH-E-IN", line),
        (2.0, "done", "WH-E-RFB", line),
    ]
    note = tryton_adapter.find_document("credit_note", credit_key)
    assert (note.state, note.amount) == ("posted", Decimal("-20.00"))
    assert json.loads(sent[credit]["erp_document"])["id"] == note.erp_id
    assert {sent[stock]["status"], sent[credit]["status"]} == {"sent"}

    # the same batch again: nothing approved is left, so nothing happens
    again = push_adjustments(db, tryton_adapter, policy=FAST)
    assert (again.created, again.found) == (0, 0)
    # a replay (the batch approved again as if the warehouse lost the outcome): adopted, not created
    with connection(db) as con:
        con.execute("update writeback.adjustments set status = 'approved'")
    replay = push_adjustments(db, tryton_adapter, policy=FAST)
    assert (replay.created, replay.found) == (0, 2)
    assert _count(tryton_adapter, adj[stock]["action"], move_key) == 1
    assert _count(tryton_adapter, adj[credit]["action"], credit_key) == 1
    with connection(db, read_only=True) as con:
        outcomes = con.execute(
            'select outcome from writeback.attempts where adjustment_id = ? order by "attempt"',
            [sent[credit]["adjustment_id"]],
        ).fetchall()
    assert [o for (o,) in outcomes] == ["created", "found"]


class Crash(BaseException):
    """Stands for the process dying between the ERP's answer and the warehouse update."""


def test_a_crash_between_erp_create_and_warehouse_update_never_duplicates(
    db, erp_return, tryton_adapter
):
    with connection(db) as con:
        first = _stock_case(con, erp_return, "RMA-C1", "P-1003", "1")
        second = _credit_case(con, erp_return, "RMA-C2", "P-1004", "1")
    adj = _plan(db)

    def crash(adjustment, document):
        raise Crash(adjustment.adjustment_id)

    with pytest.raises(Crash):
        push_adjustments(db, tryton_adapter, policy=FAST, on_document=crash)
    with connection(db, read_only=True) as con:
        rows = adjustments(con)
    crashed = [r for r in rows.values() if r["in_flight_since"] is not None]
    assert len(crashed) == 1 and crashed[0]["status"] == "approved"  # nothing half-written

    summary = push_adjustments(db, tryton_adapter, policy=FAST)
    assert (summary.found, summary.created) == (1, 1)  # the crashed one adopted by its key
    for mismatch in (first, second):
        assert (
            _count(tryton_adapter, adj[mismatch]["action"], adj[mismatch]["idempotency_key"]) == 1
        )
    with connection(db, read_only=True) as con:
        assert {r["status"] for r in adjustments(con).values()} == {"sent"}
        assert all(r["in_flight_since"] is None for r in adjustments(con).values())


def _documents(adapter: TrytonAdapter, keys: list[str]) -> list[int]:
    return [_count(adapter, "create_return_shipment", k) for k in keys]


def test_sigkill_mid_batch_then_push_again_creates_each_document_once(
    db, erp_return, tryton_server, tryton_adapter, tmp_path
):
    """The kill must land inside the batch: the process marked its writeback stage, and when it
    died the ERP held some of the batch's documents but not all. An attempt whose kill landed
    elsewhere (before the first document or after the last) is not counted; a fresh batch is
    planned for the next one."""
    env = {**os.environ, **tryton_server.env(), "RETURNSYNC_DB": str(db)}
    interrupted = None
    for attempt in range(5):
        with connection(db) as con:
            ids = [
                _stock_case(con, erp_return, f"RMA-K{attempt}-{i}", sku, "1", "WH-W-SCR")
                for i, sku in enumerate(PRODUCTS)
            ]
        adj = _plan(db)
        keys = [adj[m]["idempotency_key"] for m in ids]
        marker = tmp_path / f"stages-{attempt}"
        process = subprocess.Popen(
            [*RETURNSYNC, "push", "--backoff", "0"],
            cwd=PROJECT_ROOT,
            env={**env, MARKER_ENV: str(marker)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(1200):  # bounded: until the first document exists in Tryton
                if process.poll() is not None or any(_documents(tryton_adapter, keys)):
                    break
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
        stages = marker.read_text().split() if marker.exists() else []
        assert stages[:2] == ["writeback", str(process.pid)], stages  # it was the push, pushing
        created = _documents(tryton_adapter, keys)
        if process.returncode == -signal.SIGKILL and 0 < sum(created) < len(keys):
            interrupted = keys
            break
        push_adjustments(db, tryton_adapter, policy=FAST)  # finish this batch; try again
    assert interrupted, "no kill landed inside a batch in 5 attempts"
    assert max(created) == 1  # what the killed push did create, it created once

    summary = push_adjustments(db, tryton_adapter, policy=FAST)
    assert summary.exceptions == 0
    assert _documents(tryton_adapter, interrupted) == [1, 1, 1, 1]
    with connection(db, read_only=True) as con:
        assert {r["status"] for r in adjustments(con).values()} == {"sent"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_erp_unreachable_retries_then_stops_before_any_adjustment_changes(
    db, erp_return, tryton_server
):
    with connection(db) as con:
        first = _stock_case(con, erp_return, "RMA-D1", "P-1001", "1")
        second = _stock_case(con, erp_return, "RMA-D2", "P-1002", "1")
    _plan(db)
    down = TrytonAdapter.connect(
        f"http://127.0.0.1:{_closed_port()}",
        tryton_server.database,
        tryton_server.user,
        tryton_server.password,
        timeout=2,
    )
    waits = []
    policy = RetryPolicy(max_attempts=3, backoff_seconds=0.01)
    with connection(db, read_only=True) as con:
        before = adjustments(con)
    summary = push_adjustments(db, down, policy=policy, sleep=waits.append)
    assert waits == [0.01, 0.02]  # exponential backoff between the three attempts
    assert summary.unreachable and summary.exceptions == 0 and summary.remaining == 2
    assert summary.stopped_reason.startswith("ERP unreachable")
    with connection(db, read_only=True) as con:
        rows = adjustments(con)
        queue = open_exceptions(con)
        attempts = con.execute("select outcome, message from writeback.attempts").fetchall()
    assert rows == before  # checked before any send: no adjustment changed (DESIGN §12)
    assert {rows[m]["status"] for m in (first, second)} == {"approved"} and not queue
    ((outcome, message),) = attempts  # the refusal is in the audit trail, once
    assert outcome == "transient_error" and "cannot reach Tryton" in message
    assert tryton_server.password not in message

    # once the ERP is back the same adjustments go out, once
    back = push_adjustments(db, tryton_server.adapter(), policy=FAST)
    assert back.created == 2


def test_wrong_credentials_stop_with_a_clear_error_without_the_secret(
    db, erp_return, tryton_server
):
    with connection(db) as con:
        mismatch = _stock_case(con, erp_return, "RMA-A1", "P-1001", "1")
    _plan(db)
    secret = "wrong-secret-91b2"
    bad = TrytonAdapter.connect(
        tryton_server.url, tryton_server.database, tryton_server.user, secret
    )
    summary = push_adjustments(db, bad, policy=FAST, secrets=(secret,))
    assert summary.auth_failed and summary.remaining == 1 and summary.created == 0
    assert repr(tryton_server.user) in summary.stopped_reason
    assert repr(tryton_server.database) in summary.stopped_reason
    with connection(db, read_only=True) as con:
        row = adjustments(con)[mismatch]
        logged = con.execute("select string_agg(message, ' ') from writeback.attempts").fetchone()
    assert row["status"] == "approved" and "wrong user or password" in logged[0]
    assert secret not in logged[0] and secret not in summary.stopped_reason

    env = {**os.environ, **tryton_server.env(), "RETURNSYNC_ERP_PASSWORD": secret}
    result = subprocess.run(
        [*RETURNSYNC, "push", "--db", str(db), "--backoff", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4  # the ERP refused the credentials (DESIGN §12)
    assert "wrong user or password" in result.stderr and "RETURNSYNC_ERP_PASSWORD" in result.stderr
    assert secret not in result.stdout + result.stderr

    missing = {k: v for k, v in env.items() if k != "RETURNSYNC_ERP_PASSWORD"}
    result = subprocess.run(
        [*RETURNSYNC, "push", "--db", str(db)],
        cwd=PROJECT_ROOT,
        env=missing,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "set RETURNSYNC_ERP_PASSWORD" in result.stderr


def test_a_refused_document_goes_to_the_exception_queue_with_trytons_message(
    db, erp_return, tryton_adapter
):
    with connection(db) as con:
        refused = _stock_case(con, erp_return, "RMA-R1", "P-1001", "1", "WH-X-STO")
        fine = _stock_case(con, erp_return, "RMA-R2", "P-1002", "1")
    _plan(db)
    summary = push_adjustments(db, tryton_adapter, policy=FAST)
    assert (summary.exceptions, summary.created, summary.stopped_reason) == (1, 1, None)
    with connection(db, read_only=True) as con:
        rows = adjustments(con)
        queue = open_exceptions(con)
    assert rows[refused]["status"] == "exception" and rows[fine]["status"] == "sent"
    assert "no location with code 'WH-X-STO'" in queue[refused]["message"]
    assert queue[refused]["adjustment_id"] == rows[refused]["adjustment_id"]


def test_over_limit_waits_rejected_never_sent_and_dry_run_sends_nothing(
    db, erp_return, tryton_adapter
):
    with connection(db) as con:
        small = _stock_case(con, erp_return, "RMA-L1", "P-1003", "3")
        big = _stock_case(con, erp_return, "RMA-L2", "P-1004", "11")
        money = _credit_case(con, erp_return, "RMA-L3", "P-1001", "26")  # 260.00 > 250
    adj = _plan(db)
    assert (adj[small]["status"], adj[big]["status"], adj[money]["status"]) == (
        "approved",
        "planned",
        "planned",
    )

    dry = push_adjustments(db, None, dry_run=True)
    assert [r.adjustment_id for r in dry.results] == [adj[small]["adjustment_id"]]
    assert tryton_adapter.find_document("return_shipment", adj[small]["idempotency_key"]) is None

    with connection(db) as con:
        approve(con, adj[big]["adjustment_id"], by="alice")
        reject(con, adj[money]["adjustment_id"], by="bob", reason="refund was a mistake")
    summary = push_adjustments(db, tryton_adapter, policy=FAST)
    assert summary.created == 2
    assert tryton_adapter.find_document("return_shipment", adj[big]["idempotency_key"]) is not None
    assert tryton_adapter.find_document("credit_note", adj[money]["idempotency_key"]) is None
    with connection(db, read_only=True) as con:
        rows = adjustments(con)
    assert rows[money]["status"] == "rejected" and rows[big]["approved_by"] == "alice"


def test_a_malformed_payload_goes_to_the_exception_queue_and_the_batch_goes_on(
    db, erp_return, tryton_adapter
):
    with connection(db) as con:
        broken = _stock_case(con, erp_return, "RMA-B1", "P-1001", "1")
        fine = _stock_case(con, erp_return, "RMA-B2", "P-1002", "1")
    adj = _plan(db)
    with connection(db) as con:
        con.execute(
            "update writeback.adjustments set payload = '{}' where adjustment_id = ?",
            [adj[broken]["adjustment_id"]],
        )
    summary = push_adjustments(db, tryton_adapter, policy=FAST)
    assert (summary.exceptions, summary.created) == (1, 1)
    with connection(db, read_only=True) as con:
        queue = open_exceptions(con)
        rows = adjustments(con)
    assert "KeyError" in queue[broken]["message"] and rows[fine]["status"] == "sent"
