"""ERP-native write-back against the real Tryton 8.2 server (DESIGN §6, §8; issue 22).

Each action of the vocabulary (pipelines/lib/erp/base.py) is applied to a return made the way
Tryton makes it (a sale, the `sale.return_sale` wizard, its draft customer return shipment and
draft credit note), and DESIGN §6's post-conditions are checked over JSON-RPC: stock per location,
posted credit, no draft document left that could post the same goods or money again, no negative
location. Then: the same key twice (idempotency), an earlier release's keys after the upgrade, a
closed fiscal period, and `push --dry-run` naming what Tryton could not build.

The session's server is shared with other tests, so stock is compared before and after.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.erp import ErpPermanentError, TrytonAdapter
from pipelines.lib.migrations import applied_versions, migrate
from pipelines.lib.warehouse import connect, connection
from pipelines.lib.writeback import idempotency_key, push_adjustments
from pipelines.lib.writeback.push import RetryPolicy
from tests.fixtures.tryton_server import create_sale, return_sale, sale_lines
from tests.writeback.helpers import (
    ReturnSpec,
    add_mismatch,
    add_return,
    adjustments,
    make_warehouse,
    open_exceptions,
)

pytestmark = pytest.mark.erp

FAST = RetryPolicy(max_attempts=2, backoff_seconds=0)
NOW = datetime.now(UTC)


def _return(client, lines: list[tuple[str, int, str]], warehouse: str = "WH-E") -> dict:
    """A confirmed sale and its confirmed return (Tryton's own draft shipment and credit note)."""
    tag = uuid.uuid4().hex[:8]
    sale = create_sale(
        client, f"#N-{tag}", [(c, q, Decimal(p)) for c, q, p in lines], warehouse_code=warehouse
    )
    returned = return_sale(client, sale, rma=f"RMA-N-{tag}")
    products = {
        r["id"]: r["code"]
        for r in client.call("product.product", "search_read", [], 0, None, None, ["code"])
    }
    by_code = {products[r["product"]]: r["id"] for r in sale_lines(client, returned)}
    (party,) = client.call("sale.sale", "read", [returned], ["party"])
    return {"return": returned, "lines": by_code, "party": party["party"], "rma": f"RMA-N-{tag}"}


def _stock(client, code: str, location: str) -> float:
    (product,) = client.call("product.product", "search", [("code", "=", code)], 0, 1, None)
    (loc,) = client.call("stock.location", "search", [("code", "=", location)], 0, 1, None)
    (row,) = client.call(
        "product.product", "read", [product], ["quantity"], context={"locations": [loc]}
    )
    return row["quantity"]


def _open_moves(client, line_id: int) -> list[dict]:
    return client.call(
        "stock.move", "search_read",
        [("origin", "=", f"sale.line,{line_id}"), ("state", "in", ["draft", "staging"])],
        0, None, None, ["quantity", "shipment"],
    )  # fmt: skip


def _put_away(client, doc) -> list[tuple[str, float, str, str]]:
    """(location code, quantity, state, origin) of the shipment's moves."""
    moves = client.call(
        "stock.move", "read", list(doc.line_ids), ["to_location", "quantity", "state", "origin"]
    )
    codes = {
        r["id"]: r["code"]
        for r in client.call("stock.location", "read", [m["to_location"] for m in moves], ["code"])
    }
    return sorted((codes[m["to_location"]], m["quantity"], m["state"], m["origin"]) for m in moves)


def _credit_invoices(client, line_ids: list[int]) -> list[dict]:
    lines = client.call(
        "account.invoice.line", "search_read",
        [("origin", "in", [f"sale.line,{i}" for i in line_ids])],
        0, None, None, ["invoice", "quantity", "unit_price", "origin"],
    )  # fmt: skip
    invoices = client.call(
        "account.invoice", "read", sorted({r["invoice"] for r in lines}),
        ["state", "total_amount", "reference", "invoice_date"],
    )  # fmt: skip
    for invoice in invoices:
        invoice["lines"] = sorted(
            (r["origin"], r["quantity"], r["unit_price"])
            for r in lines
            if r["invoice"] == invoice["id"]
        )
    return invoices


def test_finish_return_shipment_receives_the_returns_own_shipment_into_the_disposition(
    tryton_adapter,
):
    client = tryton_adapter.client
    ret = _return(client, [("P-1005", 2, "44.00")])
    line = ret["lines"]["P-1005"]
    (own,) = {m["shipment"] for m in _open_moves(client, line)}
    # a person's reference on it (the RMA) does not make it someone else's document
    client.call(
        "stock.shipment.out.return", "write", [int(own.split(",")[1])], {"reference": ret["rma"]}
    )
    before = {loc: _stock(client, "P-1005", loc) for loc in ("WH-E-RFB", "WH-E-IN")}
    payload = {
        "return_line_ref": line,
        "product_code": "P-1005",
        "quantity": "2",
        "to_location_code": "WH-E-RFB",
        "description": "t",
    }
    assert tryton_adapter.verify("finish_return_shipment", payload) == []
    key = f"returnsync-test-{uuid.uuid4().hex}"
    doc = tryton_adapter.apply("finish_return_shipment", key, payload)

    assert (doc.model, doc.state, doc.created) == ("stock.shipment.out.return", "done", True)
    assert f"{doc.model},{doc.erp_id}" == own  # the return's own shipment, not a new one
    origin = f"sale.line,{line}"
    assert _put_away(client, doc) == [
        ("WH-E-IN", 2.0, "done", origin),
        ("WH-E-RFB", 2.0, "done", origin),  # the posting recon counts (DESIGN §8)
    ]
    assert _stock(client, "P-1005", "WH-E-RFB") == before["WH-E-RFB"] + 2
    assert _stock(client, "P-1005", "WH-E-IN") == before["WH-E-IN"]  # through the dock, not left
    assert _open_moves(client, line) == []  # nothing left to receive the same goods again

    again = tryton_adapter.apply("finish_return_shipment", key, payload)
    assert (again.erp_id, again.created) == (doc.erp_id, False)
    assert tryton_adapter.find_document("return_shipment", key).erp_id == doc.erp_id


def test_goods_received_but_never_put_away_are_moved_from_the_input_to_the_disposition(
    tryton_adapter,
):
    """The return shipment was received (the goods sit in the input location) and left there:
    its put-away is replaced by an internal move to the disposition location, and the shipment
    is finished, so nothing is left that could put the same goods away again."""
    client = tryton_adapter.client
    ret = _return(client, [("P-1004", 2, "34.99")])
    line = ret["lines"]["P-1004"]
    (own,) = {m["shipment"] for m in _open_moves(client, line)}
    shipment = int(own.split(",")[1])
    tryton_adapter._button("stock.shipment.out.return", "receive", [shipment])
    rfb, dock = _stock(client, "P-1004", "WH-E-RFB"), _stock(client, "P-1004", "WH-E-IN")
    key = f"returnsync-test-{uuid.uuid4().hex}"
    payload = {"return_line_ref": line, "product_code": "P-1004", "quantity": "2",
               "to_location_code": "WH-E-RFB"}  # fmt: skip
    doc = tryton_adapter.apply("finish_return_shipment", key, payload)
    assert (doc.model, doc.state) == ("stock.shipment.internal", "done")
    assert (_stock(client, "P-1004", "WH-E-RFB"), _stock(client, "P-1004", "WH-E-IN")) == (
        rfb + 2,
        dock - 2,
    )
    (state,) = client.call("stock.shipment.out.return", "read", [shipment], ["state"])
    assert state["state"] == "done" and _open_moves(client, line) == []
    assert tryton_adapter.apply("finish_return_shipment", key, payload).erp_id == doc.erp_id


def test_a_shipment_shared_with_other_lines_is_received_line_by_line(tryton_adapter):
    """The return's shipment holds two lines: each fix receives only its own line (into its own
    warehouse's location), so neither line's goods are received twice or left in draft."""
    client = tryton_adapter.client
    ret = _return(client, [("P-1003", 2, "59.50"), ("P-1004", 1, "34.99")])
    first, second = ret["lines"]["P-1003"], ret["lines"]["P-1004"]
    scrap_before = _stock(client, "P-1003", "WH-E-SCR")
    west_before = _stock(client, "P-1004", "WH-W-STO")
    a = tryton_adapter.apply(
        "finish_return_shipment",
        f"returnsync-test-{uuid.uuid4().hex}",
        {"return_line_ref": first, "product_code": "P-1003", "quantity": "2",
         "to_location_code": "WH-E-SCR"},
    )  # fmt: skip
    assert _open_moves(client, first) == []
    assert len(_open_moves(client, second)) == 1  # the other line waits for its own fix
    b = tryton_adapter.apply(
        "create_return_shipment",  # finishes the line's own shipment when there is one
        f"returnsync-test-{uuid.uuid4().hex}",
        {"return_line_ref": second, "product_code": "P-1004", "quantity": "1",
         "to_location_code": "WH-W-STO"},
    )  # fmt: skip
    assert a.erp_id != b.erp_id and {a.state, b.state} == {"done"}
    assert _open_moves(client, second) == []
    assert _stock(client, "P-1003", "WH-E-SCR") == scrap_before + 2
    assert _stock(client, "P-1004", "WH-W-STO") == west_before + 1  # the goods went west


def test_create_return_shipment_when_none_is_left_and_internal_move_never_goes_negative(
    tryton_adapter,
):
    client = tryton_adapter.client
    ret = _return(client, [("P-1006", 3, "74.25")])
    line = ret["lines"]["P-1006"]
    received = tryton_adapter.apply(
        "finish_return_shipment",
        f"returnsync-test-{uuid.uuid4().hex}",
        {"return_line_ref": line, "product_code": "P-1006", "quantity": "3",
         "to_location_code": "WH-E-STO"},
    )  # fmt: skip
    sto, rtv = _stock(client, "P-1006", "WH-E-STO"), _stock(client, "P-1006", "WH-E-RTV")
    # the ERP posted all 3 to restock, the warehouse inspected 2 of them into return-to-vendor
    key = f"returnsync-test-{uuid.uuid4().hex}"
    move = {"return_line_ref": line, "product_code": "P-1006", "quantity": "2",
            "from_location_code": "WH-E-STO", "to_location_code": "WH-E-RTV"}  # fmt: skip
    doc = tryton_adapter.apply("internal_move", key, move)
    assert (doc.model, doc.state) == ("stock.shipment.internal", "done")
    assert (_stock(client, "P-1006", "WH-E-STO"), _stock(client, "P-1006", "WH-E-RTV")) == (
        sto - 2,
        rtv + 2,
    )
    assert tryton_adapter.apply("internal_move", key, move).erp_id == doc.erp_id
    held = _stock(client, "P-1006", "WH-E-RTV")
    too_many = {**move, "quantity": str(int(held) + 1), "from_location_code": "WH-E-RTV",
                "to_location_code": "WH-E-SCR"}  # fmt: skip
    with pytest.raises(ErpPermanentError, match="negative"):
        tryton_adapter.apply("internal_move", f"returnsync-test-{uuid.uuid4().hex}", too_many)
    assert _stock(client, "P-1006", "WH-E-RTV") == held

    # one more unit arrives later: nothing is left to finish, a supplementary shipment is made
    assert _open_moves(client, line) == []
    extra = tryton_adapter.apply(
        "create_return_shipment",
        f"returnsync-test-{uuid.uuid4().hex}",
        {"return_line_ref": line, "product_code": "P-1006", "quantity": "1",
         "to_location_code": "WH-E-STO"},
    )  # fmt: skip
    assert extra.erp_id != received.erp_id and extra.state == "done"
    assert _put_away(client, extra)[1][:3] == ("WH-E-STO", 1.0, "done")


def test_post_draft_credit_note_corrects_the_returns_own_draft_and_leaves_no_other(
    tryton_adapter,
):
    """The return's draft credit note was edited to 1 x 40 for a 2-unit line (a credit note too
    small), and its second line is already credited by a posted note: the fix posts the own
    draft corrected to 2 x 40.00 for the first line only; no draft of either line is left."""
    client = tryton_adapter.client
    ret = _return(client, [("P-1001", 2, "40.00"), ("P-1002", 1, "10.00")])
    shoe, jacket = ret["lines"]["P-1001"], ret["lines"]["P-1002"]
    (draft,) = _credit_invoices(client, [shoe, jacket])
    assert draft["state"] == "draft"
    (shoe_line,) = client.call(
        "account.invoice.line", "search",
        [("invoice", "=", draft["id"]), ("origin", "=", f"sale.line,{shoe}")], 0, 1, None,
    )  # fmt: skip
    client.call("account.invoice.line", "write", [shoe_line], {"quantity": -1.0})
    # credited earlier by a posted note of its own (a person's, outside this return's draft)
    jacket_note = tryton_adapter.create_credit_note(
        f"manual-{uuid.uuid4().hex}",
        return_line_ref=jacket,
        party=ret["party"],
        currency_code="EUR",
        lines=[("P-1002", 1, "10.00")],
        description="by hand",
    )
    assert (jacket_note.state, jacket_note.amount) == ("posted", Decimal("-10.00"))

    key = f"returnsync-test-{uuid.uuid4().hex}"
    payload = {
        "return_line_ref": shoe,
        "party": ret["party"],
        "currency_code": "EUR",
        "lines": [
            {"return_line_ref": shoe, "product_code": "P-1001", "quantity": "2",
             "unit_price": "40"}
        ],
    }  # fmt: skip
    assert tryton_adapter.verify("post_draft_credit_note", payload) == []
    doc = tryton_adapter.apply("post_draft_credit_note", key, payload)
    assert doc.erp_id == draft["id"]  # the return's own draft, posted
    invoices = {i["id"]: i for i in _credit_invoices(client, [shoe, jacket])}
    # no draft left: Tryton's own compensating drafts for the hand-made note are cancelled
    assert {i["state"] for i in invoices.values()} <= {"posted", "cancelled"}
    posted = [i for i in invoices.values() if i["state"] == "posted"]
    assert sum(i["total_amount"] for i in posted) == Decimal("-90.00")  # 2 x 40 + 1 x 10
    own = invoices[draft["id"]]
    assert (own["reference"], own["total_amount"]) == (key, Decimal("-80.00"))
    assert own["lines"] == [(f"sale.line,{shoe}", -2.0, Decimal("40"))]
    assert own["invoice_date"] == NOW.date()  # dated the push date
    assert tryton_adapter.apply("post_draft_credit_note", key, payload).erp_id == doc.erp_id


def _credit_adjustment(db, ret, sku: str, units: str, price: str) -> str:
    with connection(db) as con:
        add_return(
            con,
            ReturnSpec(
                ret["rma"], sku, ret["return"], ret["lines"][sku], ret["party"], Decimal(units),
                Decimal(price), channel_refund=Decimal(units) * Decimal(price),
            ),
        )  # fmt: skip
        amount = Decimal(units) * Decimal(price)
        mismatch = add_mismatch(
            con, "refund_without_credit", ret["rma"], amount_delta=f"-{amount}",
            draft_credit_note_id=1,
        )  # fmt: skip
        from pipelines.lib.writeback import plan_adjustments

        plan_adjustments(con)
    return mismatch


def test_a_closed_fiscal_period_sends_the_adjustment_to_the_exception_queue(
    tryton_adapter, tmp_path
):
    client = tryton_adapter.client
    ret = _return(client, [("P-1003", 1, "59.50")])
    db = make_warehouse(tmp_path / "w.duckdb")
    mismatch = _credit_adjustment(db, ret, "P-1003", "1", "59.50")
    today = NOW.date()
    periods = client.call(
        "account.period", "search",
        [("start_date", "<=", today), ("end_date", ">=", today), ("type", "=", "standard")],
        0, None, None,
    )  # fmt: skip
    journal_periods = client.call(
        "account.journal.period", "search", [("period", "in", periods)], 0, None, None
    )
    client.call("account.period", "close", periods)
    try:
        with connection(db, read_only=True) as con:
            (adj,) = [a for a in adjustments(con).values() if a["mismatch_id"] == mismatch]
        problems = tryton_adapter.verify(adj["action"], json.loads(adj["payload"]))
        assert any("is closed" in p for p in problems), problems
        summary = push_adjustments(db, tryton_adapter, policy=FAST)
        assert (summary.created, summary.exceptions) == (0, 1)
        with connection(db, read_only=True) as con:
            exception = open_exceptions(con)[mismatch]
            assert adjustments(con)[mismatch]["status"] == "exception"
        assert exception["reason"] == "the ERP refused the document"
        assert "reopen the period" in exception["message"]  # Tryton's own words
    finally:
        client.call("account.period", "reopen", periods)
        journal_periods = client.call(
            "account.journal.period", "search", [("period", "in", periods)], 0, None, None
        )
        client.call("account.journal.period", "reopen", journal_periods)
    # reopened and approved again, the same key finishes the draft it left: still one document
    with connection(db) as con:
        con.execute("update writeback.adjustments set status = 'approved'")
    again = push_adjustments(db, tryton_adapter, policy=FAST)
    assert again.exceptions == 0 and again.sent == 1
    invoices = _credit_invoices(client, [ret["lines"]["P-1003"]])
    assert [(i["state"], i["total_amount"]) for i in invoices] == [("posted", Decimal("-59.50"))]


def test_documents_sent_under_an_earlier_releases_keys_are_found_after_the_upgrade(
    tryton_adapter, tmp_path
):
    """Pushed by the earlier code path (`stock_move`: an internal shipment; `credit_note`: a new
    credit note), then the process died before the warehouse recorded it. After the upgrade
    (migration 7), pushing again finds both documents by their keys: no duplicate."""
    client = tryton_adapter.client
    ret = _return(client, [("P-1002", 1, "129.00")])
    line = ret["lines"]["P-1002"]
    db = make_warehouse(tmp_path / "w.duckdb")
    stock_payload = {"return_line_ref": line, "product_code": "P-1002", "quantity": "1",
                     "to_location_code": "WH-E-STO", "description": "old"}  # fmt: skip
    credit_payload = {"return_line_ref": line, "party": ret["party"], "currency_code": "EUR",
                      "lines": [{"product_code": "P-1002", "quantity": "1",
                                 "unit_price": "129"}], "description": "old"}  # fmt: skip
    with connection(db) as con:
        add_return(con, ReturnSpec(ret["rma"], "P-1002", ret["return"], line, ret["party"]))
        stock = add_mismatch(con, "receipt_not_posted", ret["rma"], "P-1002",
                             location="WH-E-STO", qty_delta="-1")  # fmt: skip
        credit = add_mismatch(con, "refund_without_credit", ret["rma"], amount_delta="-129")
        rows = []
        for mismatch, action, payload in ((stock, "stock_move", stock_payload),
                                          (credit, "credit_note", credit_payload)):  # fmt: skip
            key = idempotency_key(mismatch, action, payload)
            rows.append(key)
            con.execute(
                "insert into writeback.adjustments (adjustment_id, idempotency_key, mismatch_id, "
                "rule, rma_number, action, payload, status, approved_by, in_flight_since, "
                "created_at, updated_at) "
                "values (?, ?, ?, 'r', ?, ?, ?, 'approved', 'auto', ?, ?, ?)",
                ["adj-" + key[-12:], key, mismatch, ret["rma"], action, json.dumps(payload),
                 NOW, NOW, NOW],
            )  # fmt: skip
        con.execute("delete from meta.schema_migrations where version = 7")  # before the upgrade
    # what the earlier release sent before it died
    old_move = tryton_adapter.create_stock_move(
        rows[0], return_line_ref=line, product_code="P-1002", quantity=1,
        to_location_code="WH-E-STO",
    )  # fmt: skip
    old_note = tryton_adapter.create_credit_note(
        rows[1], return_line_ref=line, party=ret["party"], currency_code="EUR",
        lines=[("P-1002", 1, "129")], description="old",
    )  # fmt: skip

    con = connect(db)  # a new process: the upgrade runs
    try:
        assert 7 in applied_versions(con)  # connecting applied the upgrade
        assert migrate(con) == []
        actions = dict(
            con.execute("select idempotency_key, action from writeback.adjustments").fetchall()
        )
    finally:
        con.close()
    assert actions == {rows[0]: "finish_return_shipment", rows[1]: "create_credit_note"}

    summary = push_adjustments(db, tryton_adapter, policy=FAST)
    assert (summary.created, summary.found, summary.exceptions) == (0, 2, 0), summary.results
    with connection(db, read_only=True) as con:
        sent = {
            a["idempotency_key"]: json.loads(a["erp_document"]) for a in adjustments(con).values()
        }
    assert sent[rows[0]]["id"] == old_move.erp_id and sent[rows[1]]["id"] == old_note.erp_id
    for model, key in (("stock.shipment.internal", rows[0]), ("account.invoice", rows[1]),
                       ("stock.shipment.out.return", rows[0])):  # fmt: skip
        expected = 0 if model == "stock.shipment.out.return" else 1
        assert len(client.call(model, "search", [("reference", "=", key)], 0, None, None)) == (
            expected
        )


def test_dry_run_lists_what_tryton_could_not_build_and_changes_nothing(
    tryton_server, tryton_adapter, tmp_path, monkeypatch
):
    client = tryton_adapter.client
    (party,) = client.call("party.party", "create", [{"name": "No Address Ltd"}])
    addresses = client.call("party.address", "search", [("party", "=", party)], 0, None, None)
    if addresses:
        client.call("party.address", "delete", addresses)
    ret = _return(client, [("P-1001", 1, "89.00")])
    db = make_warehouse(tmp_path / "w.duckdb")
    with connection(db) as con:
        add_return(con, ReturnSpec("RMA-DRY-1", "P10140", ret["return"], ret["lines"]["P-1001"],
                                   ret["party"]))  # fmt: skip
        add_mismatch(con, "receipt_not_posted", "RMA-DRY-1", "P10140", location="WH-E-STO",
                     qty_delta="-1")  # fmt: skip
        other_order = ret["return"] + 100000  # another return order: the party without address
        add_return(con, ReturnSpec("RMA-DRY-2", "P-1001", other_order, ret["lines"]["P-1001"],
                                   party, Decimal(1), Decimal("89.00"),
                                   channel_refund=Decimal("89.00")))  # fmt: skip
        add_mismatch(con, "refund_without_credit", "RMA-DRY-2", amount_delta="-89.00")
        add_return(con, ReturnSpec("RMA-DRY-3", "P-1001", ret["return"], ret["lines"]["P-1001"],
                                   ret["party"]))  # fmt: skip
        add_mismatch(con, "receipt_not_posted", "RMA-DRY-3", "P-1001", location="WH-E-RFB",
                     qty_delta="-1")  # fmt: skip
        from pipelines.lib.writeback import plan_adjustments

        plan_adjustments(con)
        before = con.execute("select * from writeback.adjustments order by 1").fetchall()
    for var, value in {**tryton_server.env(), "RETURNSYNC_DB": str(db)}.items():
        monkeypatch.setenv(var, value)
    result = CliRunner().invoke(main, ["push", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "would fail" in out and "RMA RMA-DRY-1" in out
    assert "Tryton has no product with code 'P10140'" in out
    assert f"Tryton party {party} has no address to invoice" in out
    assert "would send" in out and "RMA RMA-DRY-3" in out
    assert "1 adjustment(s) would be sent, 2 would fail in the ERP; nothing sent" in out
    assert tryton_server.password not in out
    with connection(db, read_only=True) as con:
        assert con.execute("select * from writeback.adjustments order by 1").fetchall() == before
        assert con.execute("select count(*) from writeback.attempts").fetchone()[0] == 0


def test_the_factory_builds_the_adapter_from_settings(tryton_server, monkeypatch):
    from pipelines.lib.erp import ErpConfigError, adapter_from_settings
    from pipelines.settings import Settings

    for var, value in tryton_server.env().items():
        monkeypatch.setenv(var, value)
    assert isinstance(adapter_from_settings(Settings.from_env()), TrytonAdapter)
    monkeypatch.setenv("RETURNSYNC_ERP_KIND", "netsuite")
    with pytest.raises(ErpConfigError, match="unknown ERP kind 'netsuite'"):
        adapter_from_settings(Settings.from_env())
