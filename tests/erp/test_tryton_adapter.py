"""The Tryton adapter against a real Tryton 8.2 server: session auth, typed errors, idempotency."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from pipelines.lib.erp import (
    ErpAdapter,
    ErpAuthError,
    ErpPermanentError,
    ErpTransientError,
    TrytonAdapter,
)
from pipelines.settings import Settings
from tests.fixtures.tryton_server import (
    create_sale,
    erp_server_module,
    return_sale,
    sale_lines,
    start_tryton,
)

pytestmark = pytest.mark.erp


@pytest.fixture(scope="module")
def returned_sale(tryton_server):
    """A confirmed sale of 2 x P-1001 and its confirmed return order (RMA-T-1)."""
    client = tryton_server.adapter().client
    sale_id = create_sale(client, "#T-1001", [("P-1001", 2, Decimal("89.00"))])
    return_id = return_sale(client, sale_id, rma="RMA-T-1")
    (line,) = sale_lines(client, return_id)
    (party,) = client.call("sale.sale", "read", [return_id], ["party"])
    return {"sale": sale_id, "return": return_id, "line": line, "party": party["party"]}


def test_login_uses_a_session_not_basic_auth(tryton_adapter):
    client = tryton_adapter.client
    client.login()
    scheme, _, token = client._session.partition(" ")
    login, user_id, session = base64.b64decode(token).decode().split(":")
    assert scheme == "Session"
    assert (login, int(user_id)) == (client.user, client.user_id)
    assert session and "returnsync-dev" not in token
    assert isinstance(tryton_adapter, ErpAdapter)
    assert tryton_adapter.find_document("credit_note", "no-such-key") is None
    assert "returnsync-dev" not in repr(tryton_adapter)


def test_wrong_password_names_user_and_database_never_the_password(tryton_server):
    secret = "not-the-password-7f3a"
    adapter = TrytonAdapter.connect(
        tryton_server.url, tryton_server.database, tryton_server.user, secret
    )
    with pytest.raises(ErpAuthError) as caught:
        adapter.find_document("credit_note", "any")
    message = str(caught.value)
    assert repr(tryton_server.user) in message and repr(tryton_server.database) in message
    assert secret not in message and secret not in repr(adapter)
    assert caught.value.__cause__ is None  # no chained HTTP error carrying request details


def test_wrong_database_and_missing_settings_are_named(tryton_server):
    adapter = TrytonAdapter.connect(
        tryton_server.url, "no_such_db", tryton_server.user, tryton_server.password
    )
    with pytest.raises(ErpAuthError, match="no database 'no_such_db'") as caught:
        adapter.find_document("stock_move", "any")
    assert tryton_server.password not in str(caught.value)

    settings = Settings.from_env({"RETURNSYNC_ERP_URL": tryton_server.url})
    with pytest.raises(ErpAuthError, match=r"RETURNSYNC_ERP_DATABASE.*RETURNSYNC_ERP_PASSWORD"):
        TrytonAdapter.from_settings(settings)
    ok = TrytonAdapter.from_settings(Settings.from_env(tryton_server.env()))
    assert ok.find_document("stock_move", "any") is None


def test_return_order_comes_from_the_return_wizard(tryton_adapter, returned_sale):
    (order,) = tryton_adapter.client.call(
        "sale.sale", "read", [returned_sale["return"]], ["origin", "reference", "state"]
    )
    assert order["origin"] == f"sale.sale,{returned_sale['sale']}"
    assert order["reference"] == "RMA-T-1"
    assert returned_sale["line"]["quantity"] == -2.0


def _count(client, model: str, key: str) -> int:
    return client.call(model, "search_count", [("reference", "=", key)])


def test_credit_note_with_a_key_is_created_once(tryton_adapter, returned_sale):
    key = "adj-credit-0001"
    line = returned_sale["line"]
    kwargs = dict(
        return_line_ref=line["id"],
        party=returned_sale["party"],
        currency_code="EUR",
        lines=[("P-1001", 2, Decimal("89.00"))],
        description="returnsync: refund without credit",
    )
    first = tryton_adapter.create_credit_note(key, **kwargs)
    assert first.created and first.state == "posted" and first.amount == Decimal("-178.00")

    again = tryton_adapter.create_credit_note(key, **kwargs)
    assert (again.erp_id, again.created) == (first.erp_id, False)
    assert _count(tryton_adapter.client, "account.invoice", key) == 1
    assert tryton_adapter.find_document("credit_note", key).erp_id == first.erp_id

    (invoice,) = tryton_adapter.client.call(
        "account.invoice", "read", [first.erp_id], ["type", "reference", "state"]
    )
    assert (invoice["type"], invoice["reference"], invoice["state"]) == ("out", key, "posted")
    (inv_line,) = tryton_adapter.client.call(
        "account.invoice.line", "read", list(first.line_ids), ["quantity", "unit_price", "origin"]
    )
    assert inv_line["quantity"] == -2.0 and inv_line["unit_price"] == Decimal("89.00")
    assert inv_line["origin"] == f"sale.line,{line['id']}"


def test_stock_posting_with_a_key_is_created_once(tryton_adapter, returned_sale):
    key = "adj-stock-0001"
    kwargs = dict(
        return_line_ref=returned_sale["line"]["id"],
        product_code="P-1001",
        quantity=Decimal("2"),
        to_location_code="WH-E-STO",
        description="restock 2 x P-1001 for LR-1",  # accepted, though Tryton has no field for it
    )
    first = tryton_adapter.create_stock_move(key, **kwargs)
    assert first.created and first.state == "done"
    again = tryton_adapter.create_stock_move(key, **kwargs)
    assert (again.erp_id, again.created) == (first.erp_id, False)
    client = tryton_adapter.client
    assert _count(client, "stock.shipment.internal", key) == 1

    (move,) = client.call(
        "stock.move", "read", list(first.line_ids),
        ["state", "quantity", "to_location", "origin", "shipment"],
    )  # fmt: skip
    (sto,) = client.call("stock.location", "search", [("code", "=", "WH-E-STO")], 0, None, None)
    assert move["state"] == "done" and move["quantity"] == 2.0 and move["to_location"] == sto
    assert move["origin"] == f"sale.line,{returned_sale['line']['id']}"
    assert move["shipment"] == f"stock.shipment.internal,{first.erp_id}"


def test_a_push_killed_after_create_is_finished_not_duplicated(
    tryton_adapter, returned_sale, monkeypatch
):
    """Killed between create and post, the push left a draft: the retry posts that very one."""
    key = "adj-credit-half"
    kwargs = dict(
        return_line_ref=None,
        party=returned_sale["party"],
        currency_code="USD",
        lines=[("P-1002", 1, Decimal("129.00"))],
        description="half",
    )

    def killed(self, doc):
        raise KeyboardInterrupt("push killed after the create call")

    with monkeypatch.context() as patch:
        patch.setattr(TrytonAdapter, "_finish_credit_note", killed)
        with pytest.raises(KeyboardInterrupt):
            tryton_adapter.create_credit_note(key, **kwargs)
    half = tryton_adapter.find_document("credit_note", key)
    assert half.state == "draft"

    finished = tryton_adapter.create_credit_note(key, **kwargs)
    assert (finished.erp_id, finished.state, finished.created) == (half.erp_id, "posted", False)
    assert _count(tryton_adapter.client, "account.invoice", key) == 1


def test_validation_errors_are_permanent_with_trytons_message(tryton_adapter):
    with pytest.raises(ErpPermanentError, match="location with code 'WH-X-STO'"):
        tryton_adapter.create_stock_move(
            "adj-bad-location", return_line_ref=None, product_code="P-1001", quantity=1,
            to_location_code="WH-X-STO",
        )  # fmt: skip
    assert tryton_adapter.find_document("stock_move", "adj-bad-location") is None
    with pytest.raises(ErpPermanentError) as caught:
        tryton_adapter.client.call("account.invoice", "create", [{"type": "out"}])
    assert "required" in caught.value.erp_message


def test_a_stopped_server_is_a_transient_error_and_nothing_is_half_written(tmp_path):
    server = start_tryton(tmp_path / "tryton")
    port = server.port
    try:
        adapter = TrytonAdapter.connect(server.url, server.database, server.user, server.password)
        assert adapter.find_document("credit_note", "adj-outage") is None
        server.stop()
        with pytest.raises(ErpTransientError, match="cannot reach Tryton"):
            adapter.create_credit_note(
                "adj-outage", return_line_ref=None, party="C-0001", currency_code="EUR",
                lines=[("P-1003", 1, Decimal("59.50"))], description="outage",
            )  # fmt: skip
        server = erp_server_module().start(tmp_path / "tryton", port, fresh=False)
        assert adapter.find_document("credit_note", "adj-outage") is None
        doc = adapter.create_credit_note(
            "adj-outage", return_line_ref=None, party="C-0001", currency_code="EUR",
            lines=[("P-1003", 1, Decimal("59.50"))], description="outage",
        )  # fmt: skip
        assert doc.created and doc.state == "posted"
    finally:
        server.stop()


def test_credentials_in_the_url_never_reach_messages():
    adapter = TrytonAdapter.connect("http://admin:s3cret@127.0.0.1:9/", "db", "admin", "pw-1")
    with pytest.raises(ErpTransientError) as caught:
        adapter.find_document("credit_note", "k")
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(adapter)
    assert "http://127.0.0.1:9" in str(caught.value)
