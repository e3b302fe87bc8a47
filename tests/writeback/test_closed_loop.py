"""The closed loop (DESIGN §6): a small landscape in a real Tryton plus channel and WMS files;
`returnsync run` finds the mismatches and plans adjustments, the push creates the credit note and
the stock posting in Tryton, the next batch pull brings them back, and the mismatches resolve.

One return, Shopify via the returns SaaS (RMA LR-CL-1, 2 x P-1001 at 40.00 EUR): received and
inspected (RESTOCK at DC-EAST) three days ago but never posted in the ERP (receipt_not_posted at
WH-E-STO), refunded 80.00 by Shopify three days ago without an ERP credit note
(refund_without_credit). Tryton's own draft return shipment and draft credit note do not count.
A private Tryton server keeps other tests' ERP documents out of this reconciliation.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.warehouse import connection
from returnsync_sim.cdc import CdcWriter
from tests.fixtures.tryton_server import create_sale, return_sale, sale_lines, start_tryton

pytestmark = [pytest.mark.erp, pytest.mark.slow]

RMA = "LR-CL-1"
AS_OF = datetime.now(UTC).replace(microsecond=0)
EARLIER = AS_OF - timedelta(days=3)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def erp(tmp_path_factory):
    server = start_tryton(tmp_path_factory.mktemp("tryton_loop"))
    try:
        yield server
    finally:
        server.stop()


def _adapter(server):
    from pipelines.lib.erp import TrytonAdapter

    return TrytonAdapter.connect(server.url, server.database, server.user, server.password)


def _write_landing(landing) -> None:
    (landing / "reference").mkdir(parents=True)
    (landing / "reference" / "sku_crosswalk.csv").write_text(
        "channel,channel_sku,erp_product_code\nshopify,SH-1001,P-1001\n"
    )
    (landing / "reference" / "warehouse_crosswalk.csv").write_text(
        "dc_code,erp_warehouse_code\nDC-EAST,WH-E\nDC-WEST,WH-W\nDC-CENTRAL,WH-C\n"
    )
    payload = {
        "id": 7001,
        "rma": RMA,
        "state": "closed",
        "created_at": _iso(AS_OF - timedelta(days=5)),
        "updated_at": _iso(EARLIER),
        "order_id": 5000000001,
        "order_name": "#CL-1001",
        "currency": "EUR",
        "outcome": "refund",
        "total_refund": "80.00",
        "tracking_number": "1ZCL0001",
        "line_items": [
            {
                "line_item_id": 1,
                "provider_line_item_id": 130001,
                "sku": "SH-1001",
                "quantity": 2,
                "price": "40.00",
                "refund": "80.00",
                "return_reason": "defective",
                "parent_return_reason": "defective",
            }
        ],
    }
    (landing / "returns_saas").mkdir()
    (landing / "returns_saas" / "webhooks.ndjson").write_text(
        json.dumps(
            {
                "webhook_id": str(uuid.UUID(int=1)),
                "topic": "return.closed",
                "delivered_at": _iso(EARLIER),
                "payload": payload,
            }
        )
        + "\n"
    )
    refund = {
        "id": 509000001,
        "order_id": 5000000001,
        "created_at": _iso(EARLIER),
        "processed_at": _iso(EARLIER),
        "note": f"Return {RMA}",
        "refund_line_items": [
            {
                "id": 1,
                "line_item_id": 130001,
                "quantity": 2,
                "restock_type": "return",
                "subtotal": "80.00",
                "total_tax": "0.00",
                "line_item": {"id": 130001, "sku": "SH-1001", "price": "40.00"},
            }
        ],
        "transactions": [
            {
                "id": 1,
                "kind": "refund",
                "status": "success",
                "amount": "80.00",
                "currency": "EUR",
                "gateway": "shopify_payments",
            }
        ],
    }
    (landing / "shopify").mkdir()
    (landing / "shopify" / "refunds.ndjson").write_text(json.dumps(refund) + "\n")
    cdc = CdcWriter(out_dir=landing, seed=1, mixed_encodings=False)
    received = EARLIER - timedelta(hours=2)
    cdc.write(
        cdc.change(
            "wms",
            "receipts",
            "c",
            {
                "receipt_id": 1,
                "dc_code": "DC-EAST",
                "rma_number": RMA,
                "tracking_number": "1ZCL0001",
                "sku": "P-1001",
                "lot": None,
                "serial": None,
                "quantity": Decimal("2.000"),
                "received_at": received,
                "license_plate": "LP-CL-1",
            },
            received,
        )
    )
    cdc.write(
        cdc.change(
            "wms",
            "inspections",
            "c",
            {
                "inspection_id": 1,
                "receipt_id": 1,
                "grade": "A",
                "disposition": "RESTOCK",
                "quantity": Decimal("2.000"),
                "inspected_at": EARLIER,
            },
            EARLIER,
        )
    )
    cdc.close()


def _open_mismatches(db) -> set[tuple]:
    with connection(db, read_only=True) as con:
        return set(
            con.execute(
                "select rule, rma_number, coalesce(sku, ''), coalesce(location, '') "
                "from recon.mismatches where status = 'open'"
            ).fetchall()
        )


def _returnsync(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_push_closes_the_loop(erp, settings_env, dbt_manifest, monkeypatch):
    settings = settings_env
    for var, value in {
        "RETURNSYNC_ERP_URL": erp.url,
        "RETURNSYNC_ERP_DATABASE": erp.database,
        "RETURNSYNC_ERP_USER": erp.user,
        "RETURNSYNC_ERP_PASSWORD": erp.password,
        "RETURNSYNC_ERP_PULL": "true",  # every run's landing pulls the ERP over JSON-RPC
    }.items():
        monkeypatch.setenv(var, value)
    adapter = _adapter(erp)
    sale = create_sale(
        adapter.client,
        "#CL-1001",
        [("P-1001", 2, Decimal("40.00"))],
        sale_date=EARLIER.date() - timedelta(days=10),
    )
    returned = return_sale(adapter.client, sale, rma=RMA)
    (line,) = sale_lines(adapter.client, returned)
    _write_landing(settings.landing_dir)

    _returnsync("run", "--as-of", _iso(AS_OF), "--quiet")
    expected = {
        ("receipt_not_posted", RMA, "P-1001", "WH-E-STO"),
        ("refund_without_credit", RMA, "", ""),
    }
    assert _open_mismatches(settings.db_path) == expected

    with connection(settings.db_path, read_only=True) as con:
        planned = con.execute(
            "select rule, action, amount, quantity, status, approved_by, payload "
            "from writeback.adjustments order by rule"
        ).fetchall()
    # the return's own documents (Tryton's draft shipment and credit note) are completed
    assert [row[:6] for row in planned] == [
        (
            "receipt_not_posted",
            "finish_return_shipment",
            Decimal("80.0000"),
            Decimal("2.000"),
            "approved",
            "auto",
        ),
        (
            "refund_without_credit",
            "post_draft_credit_note",
            Decimal("80.0000"),
            Decimal("2.000"),  # the real units at the line's unit price, not 1 x 80
            "approved",
            "auto",
        ),
    ]
    assert all(json.loads(row[6])["return_line_ref"] == line["id"] for row in planned)

    pushed = _returnsync("push", "--backoff", "0")
    assert "pushed: 2 created, 0 already in the ERP, 0 to the exception queue" in pushed
    assert erp.password not in pushed
    _assert_post_conditions(adapter, line["id"])

    # the next run's batch pull brings the new ERP documents back, and the mismatches resolve
    _returnsync("run", "--as-of", _iso(AS_OF + timedelta(minutes=5)), "--quiet")
    assert _open_mismatches(settings.db_path) == set()
    with connection(settings.db_path, read_only=True) as con:
        statuses = con.execute("select rule, status from recon.mismatches order by rule").fetchall()
        adjustments = con.execute("select status from writeback.adjustments").fetchall()
    assert statuses == [("receipt_not_posted", "resolved"), ("refund_without_credit", "resolved")]
    assert adjustments == [("sent",), ("sent",)]  # and nothing new was planned
    assert "pushed: nothing approved to send" in _returnsync("push", "--backoff", "0")
    _assert_post_conditions(adapter, line["id"])


def _assert_post_conditions(adapter, line_id: int) -> None:
    """DESIGN §6 in Tryton, over JSON-RPC: stock per location equals the WMS's (2 restocked at
    WH-E-STO, the input dock back to 0, nothing negative), the posted credit equals the channel
    refund (2 x 40.00), and no draft document of the return is left to post them again."""
    client = adapter.client
    origin = f"sale.line,{line_id}"
    codes = {"WH-E-STO": 2.0, "WH-E-IN": 0.0, "WH-E-RFB": 0.0, "WH-E-SCR": 0.0}
    product = client.call("product.product", "search", [("code", "=", "P-1001")], 0, 1, None)
    for code, expected in codes.items():
        (location,) = client.call("stock.location", "search", [("code", "=", code)], 0, 1, None)
        (row,) = client.call(
            "product.product", "read", product, ["quantity"], context={"locations": [location]}
        )
        assert row["quantity"] == expected, code
    open_moves = client.call(
        "stock.move", "search", [("origin", "=", origin), ("state", "in", ["draft", "staging"])],
        0, None, None,
    )  # fmt: skip
    assert open_moves == []
    lines = client.call(
        "account.invoice.line", "search_read", [("origin", "=", origin)], 0, None, None,
        ["invoice", "quantity", "unit_price"],
    )  # fmt: skip
    invoices = client.call(
        "account.invoice", "read", sorted({r["invoice"] for r in lines}),
        ["state", "total_amount", "invoice_date"],
    )  # fmt: skip
    assert [i["state"] for i in invoices] == ["posted"]  # no draft beside it
    assert invoices[0]["total_amount"] == Decimal("-80.00")
    assert invoices[0]["invoice_date"] == datetime.now(UTC).date()  # dated the push date
    assert [(r["quantity"], r["unit_price"]) for r in lines] == [(-2.0, Decimal("40.00"))]
