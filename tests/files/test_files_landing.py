"""File ingestion: readers, ledger, dead letters and quarantine against a real DuckDB file.

Inputs are built here in the formats of DESIGN §2.4-2.8; the Shopify refund is Shopify's own
sample (../shared/fixtures/shopify/refund.json).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.lib.contracts import AMAZON_COLUMNS
from pipelines.lib.files import QUARANTINE_DIR, land_files, pending_files, sha256_of
from pipelines.lib.warehouse import connect

SHOPIFY_FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "shopify"


@pytest.fixture
def landing(tmp_path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ndjson(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return write(path, "\n".join(lines) + "\n")


def delimited(path: Path, header: list[str], rows: list[dict], sep: str) -> Path:
    lines = [sep.join(header)] + [sep.join(str(row.get(h, "")) for h in header) for row in rows]
    return write(path, "\n".join(lines) + "\n")


def rows(con, table: str, columns: str = "*", order: str = "_file, _row_number") -> list[dict]:
    rel = con.sql(f"select {columns} from raw.{table} order by {order}")
    names = rel.columns
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]


def dead_letters(con, source: str) -> list[tuple]:
    return con.execute(
        "select position, raw, error from meta.dead_letters where source = ? order by position",
        [source],
    ).fetchall()


def count(con, table: str) -> int:
    return con.execute(f"select count(*) from raw.{table}").fetchone()[0]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- builders in the formats of DESIGN §2.4-2.8 -----------------------------------------------


def webhook(webhook_id="0b7e4a52-7f0e-4f7e-9f43-1f1f6b1a0001", **payload_overrides) -> dict:
    payload = {
        "id": 104233,
        "rma": "LR-104233",
        "state": "open",
        "created_at": "2024-05-01T09:00:00Z",
        "updated_at": "2024-05-01T11:30:00+02:00",
        "order_id": 450789469,
        "order_name": "#1001",
        "currency": "USD",
        "outcome": "refund",
        "total_refund": "199.00",
        "tracking_number": "1Z999AA10123456784",
        "customer": {"email": "jane@example.com", "name": "Jane Doe"},
        "line_items": [
            {
                "line_item_id": 1,
                "provider_line_item_id": 703073504,
                "sku": "IPOD2008BLACK",
                "quantity": 1,
                "price": "199.00",
                "refund": "199.00",
                "return_reason": "damaged",
                "parent_return_reason": "quality",
            }
        ],
    }
    payload.update(payload_overrides)
    return {
        "webhook_id": webhook_id,
        "topic": "return.created",
        "delivered_at": "2024-05-01T10:00:00Z",
        "payload": payload,
    }


def refund(refund_id=1001, **overrides) -> dict:
    record = {
        "id": refund_id,
        "order_id": 450789469,
        "created_at": "2024-05-02T10:00:00-04:00",
        "processed_at": "2024-05-02T10:05:00-04:00",
        "note": "customer returned it",
        "refund_line_items": [
            {
                "id": 1,
                "line_item_id": 703073504,
                "quantity": 1,
                "restock_type": "return",
                "subtotal": "199.00",
                "total_tax": "11.94",
                "line_item": {"id": 703073504, "sku": "IPOD2008BLACK", "price": "199.00"},
            }
        ],
        "transactions": [
            {
                "id": 5,
                "kind": "refund",
                "status": "success",
                "amount": "210.94",
                "currency": "USD",
                "gateway": "shopify_payments",
            }
        ],
    }
    record.update(overrides)
    return record


AMAZON_HEADER = list(AMAZON_COLUMNS)


def amazon_row(rma="DrX1zZ1RRMA", status="Approved", **overrides) -> dict:
    row = {
        "Order ID": "113-1234567-1234567",
        "Order date": "2024-04-20T08:00:00+00:00",
        "Return request date": "2024-05-01T12:00:00+00:00",
        "Return request status": status,
        "Amazon RMA ID": rma,
        "Merchant RMA ID": "",
        "Label type": "AmazonUnPaidLabel",
        "Label cost": "4.99",
        "Currency code": "USD",
        "Tracking ID": "TBA123",
        "Is prime": "N",
        "ASIN": "B000TEST01",
        "Merchant SKU": "SKU-AMZ-1",
        "Item Name": 'Widget 10" "deluxe"',
        "Return quantity": "2",
        "Return reason": "DEFECTIVE",
        "In policy": "Y",
        "Return type": "C-Returns",
        "Resolution": "StandardRefund",
        "Order Amount": "59.98",
        "Order quantity": "2",
        "Refunded Amount": "59.98",
        "Category": "Toys",
    }
    row.update(overrides)
    return row


B2B_HEADER = [
    "request_id", "account_number", "po_number", "erp_order_number", "sku", "quantity",
    "unit_price", "currency", "reason_code", "requested_at", "status", "approved_at",
]  # fmt: skip


def b2b_row(request_id="B2B-000123", **overrides) -> dict:
    row = {
        "request_id": request_id,
        "account_number": "ACC-9",
        "po_number": "PO-77",
        "erp_order_number": "SO-0042",
        "sku": "WIDGET-1",
        "quantity": "3",
        "unit_price": "12.5000",
        "currency": "EUR",
        "reason_code": "DAMAGED",
        "requested_at": "2024-05-03T08:00:00+02:00",
        "status": "approved",
        "approved_at": "2024-05-04",
    }
    row.update(overrides)
    return row


# -- Shopify's own sample ----------------------------------------------------------------------


def test_shopify_fixture_refund_lands_faithfully(landing, con):
    refund_obj = json.loads((SHOPIFY_FIXTURE / "refund.json").read_text())["refund"]
    ndjson(landing / "shopify" / "refund.ndjson", [refund_obj])

    result = land_files(con, landing)["shopify_refunds"]

    assert (result.files_landed, result.rows, result.dead_letters) == (1, 1, 0)
    [row] = rows(con, "shopify_refunds")
    assert row["id"] == 509562969 and row["order_id"] == 450789469
    assert row["created_at"] == utc(2016, 6, 20, 17, 35, 6)  # -04:00 normalized to UTC
    assert row["processed_at"] is None
    assert row["note"] == "it broke during shipping"
    lines = row["refund_line_items"]
    assert [li["line_item_id"] for li in lines] == [703073504, 466157049]
    assert [li["line_item"]["price"] for li in lines] == [Decimal("199.00"), Decimal("199.00")]
    assert sum(li["line_item"]["price"] for li in lines) == Decimal("398.00")
    assert [li["line_item"]["sku"] for li in lines] == ["IPOD2008BLACK", "IPOD2008GREEN"]
    assert all(isinstance(li["line_item"]["price"], Decimal) for li in lines)
    [tx] = row["transactions"]
    assert tx == {
        "id": 179259969,
        "kind": "refund",
        "status": "success",
        "amount": Decimal("209.00"),
        "currency": "USD",
        "gateway": "bogus",
    }
    assert isinstance(tx["amount"], Decimal)
    extra = json.loads(row["_extra"])
    assert extra["restock"] is True and extra["user_id"] == 799407056
    assert extra["refund_line_items[1].line_item"]["variant_title"] == "green"
    assert extra["transactions[0]"]["authorization"] == "authorization-key"
    assert (row["_file"], row["_row_number"]) == ("shopify/refund.ndjson", 1)
    assert row["_file_sha256"] == sha256_of(landing / "shopify" / "refund.ndjson")


# -- returns SaaS webhooks ---------------------------------------------------------------------


def test_webhooks_happy_path(landing, con):
    first = webhook()
    redelivered = webhook()  # same webhook_id delivered twice: both kept, staging deduplicates
    later = webhook(
        "0b7e4a52-7f0e-4f7e-9f43-1f1f6b1a0002",
        state="closed",
        updated_at="2024-05-03",  # date-only
        created_at="2024-05-01T09:00:00",  # naive = UTC
    )
    later["topic"] = "return.closed"
    ndjson(landing / "returns_saas" / "deliveries_1.ndjson", [first, redelivered, "", later])

    result = land_files(con, landing)["returns_saas_webhooks"]

    assert (result.files_landed, result.rows, result.dead_letters) == (1, 3, 0)
    got = rows(con, "returns_saas_webhooks")
    assert [r["_row_number"] for r in got] == [1, 2, 4]  # line numbers; the blank line 3 skipped
    assert [r["webhook_id"] for r in got].count(first["webhook_id"]) == 2
    one = got[0]
    assert one["topic"] == "return.created" and one["return_id"] == 104233
    assert one["rma"] == "LR-104233" and one["state"] == "open"
    assert one["delivered_at"] == utc(2024, 5, 1, 10)
    assert one["updated_at"] == utc(2024, 5, 1, 9, 30)  # +02:00 -> UTC
    assert one["total_refund"] == Decimal("199.00")
    assert one["line_items"] == [
        {
            "line_item_id": 1,
            "provider_line_item_id": 703073504,
            "sku": "IPOD2008BLACK",
            "quantity": 1,
            "price": Decimal("199.00"),
            "refund": Decimal("199.00"),
            "return_reason": "damaged",
            "parent_return_reason": "quality",
        }
    ]
    assert json.loads(one["payload"]) == first["payload"]  # the whole payload as delivered
    assert one["_extra"] is None
    assert got[2]["updated_at"] == utc(2024, 5, 3)
    assert got[2]["created_at"] == utc(2024, 5, 1, 9)


def test_webhooks_bad_rows_dead_lettered_rest_lands(landing, con):
    no_id = webhook(webhook_id=None)
    no_rma = webhook("w-2")
    del no_rma["payload"]["rma"]
    bad_money = webhook("w-3", total_refund="12,50")
    bad_time = webhook("w-4", updated_at="yesterday")
    wrong_type = webhook("w-5", line_items={"not": "a list"})
    bad_qty = webhook("w-6")
    bad_qty["payload"]["line_items"][0]["quantity"] = "two"
    path = ndjson(
        landing / "returns_saas" / "d.ndjson",
        [webhook("w-1"), no_id, no_rma, "{not json", "[1, 2]", bad_money, bad_time, wrong_type,
         bad_qty],
    )  # fmt: skip

    result = land_files(con, landing)["returns_saas_webhooks"]

    assert (result.rows, result.dead_letters) == (1, 8)
    assert [r["webhook_id"] for r in rows(con, "returns_saas_webhooks")] == ["w-1"]
    sha = sha256_of(path)
    letters = {pos: (raw, error) for pos, raw, error in dead_letters(con, "returns_saas")}
    errors = {int(pos.split(":")[1]): error for pos, (_, error) in letters.items()}
    assert all(pos.startswith(f"{sha}:") for pos in letters)
    assert errors[2] == "missing required field 'webhook_id'"
    assert errors[3] == "missing required field 'payload.rma'"
    assert errors[4].startswith("bad JSON")
    assert errors[5] == "wrong type: the line is a list, expected a JSON object"
    assert errors[6] == "bad number in 'payload.total_refund': '12,50'"
    assert errors[7] == "bad time in 'payload.updated_at': 'yesterday'"
    assert errors[8] == "wrong type in 'payload.line_items': expected a list, got an object"
    assert errors[9] == "bad integer in 'payload.line_items[0].quantity': 'two'"
    assert letters[f"{sha}:4"][0] == "{not json"  # the line's own text


def test_webhooks_unknown_fields_tolerated(landing, con):
    delivery = webhook("w-1", loyalty_tier="gold")  # unknown payload field
    delivery["attempt"] = 3  # unknown envelope field
    delivery["payload"]["line_items"][0]["condition"] = "opened"
    ndjson(landing / "returns_saas" / "d.ndjson", [delivery])

    land_files(con, landing)

    [row] = rows(con, "returns_saas_webhooks")
    assert json.loads(row["_extra"]) == {"attempt": 3}
    payload = json.loads(row["payload"])  # payload fields stay in the whole payload
    assert payload["loyalty_tier"] == "gold"
    assert payload["line_items"][0]["condition"] == "opened"


def test_json_numbers_are_exact(landing, con):
    delivery = webhook("w-1", total_refund=19.99)  # a JSON number, not a string
    delivery["payload"]["line_items"][0]["price"] = 0.1
    ndjson(landing / "returns_saas" / "d.ndjson", [delivery])

    land_files(con, landing)

    [row] = rows(con, "returns_saas_webhooks")
    assert row["total_refund"] == Decimal("19.99")
    assert row["line_items"][0]["price"] == Decimal("0.1")
    assert '"total_refund":19.99' in row["payload"]  # still a number in the stored payload


# -- Shopify refunds ---------------------------------------------------------------------------


def test_shopify_bad_rows_and_extra_fields(landing, con):
    missing_order = refund(1002)
    del missing_order["order_id"]
    bad_amount = refund(1003)
    bad_amount["transactions"][0]["amount"] = "abc"
    bad_id = refund("x-1004")
    extra = refund(1005, admin_graphql_api_id="gid://shopify/Refund/1005")
    path = ndjson(
        landing / "shopify" / "refunds.ndjson",
        [refund(1001), missing_order, bad_amount, bad_id, extra],
    )

    result = land_files(con, landing)["shopify_refunds"]

    assert (result.rows, result.dead_letters) == (2, 3)
    got = rows(con, "shopify_refunds")
    assert [r["id"] for r in got] == [1001, 1005]
    assert got[0]["created_at"] == utc(2024, 5, 2, 14)
    assert got[0]["refund_line_items"][0]["subtotal"] == Decimal("199.00")
    assert got[0]["refund_line_items"][0]["total_tax"] == Decimal("11.94")
    assert got[0]["transactions"][0]["amount"] == Decimal("210.94")
    assert json.loads(got[1]["_extra"]) == {"admin_graphql_api_id": "gid://shopify/Refund/1005"}
    sha = sha256_of(path)
    assert dead_letters(con, "shopify") == [
        (f"{sha}:2", json.dumps(missing_order), "missing required field 'order_id'"),
        (f"{sha}:3", json.dumps(bad_amount), "bad number in 'transactions[0].amount': 'abc'"),
        (f"{sha}:4", json.dumps(bad_id), "bad integer in 'id': 'x-1004'"),
    ]


# -- Amazon returns report ---------------------------------------------------------------------


def test_amazon_happy_path(landing, con):
    delimited(landing / "amazon" / "returns_2024-05-02.tsv", AMAZON_HEADER, [amazon_row()], "\t")

    result = land_files(con, landing)["amazon_returns"]

    assert (result.files_landed, result.rows, result.dead_letters) == (1, 1, 0)
    [row] = rows(con, "amazon_returns")
    assert row["report_date"] == date(2024, 5, 2)
    assert row["order_id"] == "113-1234567-1234567"
    assert row["amazon_rma_id"] == "DrX1zZ1RRMA"
    assert row["return_request_date"] == utc(2024, 5, 1, 12)
    assert row["return_quantity"] == 2 and row["order_quantity"] == 2
    assert row["label_cost"] == Decimal("4.99")
    assert row["refunded_amount"] == Decimal("59.98")
    assert row["item_name"] == 'Widget 10" "deluxe"'  # TSV: quotes are ordinary characters
    assert row["merchant_rma_id"] is None  # empty cell -> NULL
    assert row["return_delivery_date"] is None
    assert row["_extra"] is None


def test_amazon_rma_in_two_reports_keeps_both(landing, con):
    delimited(
        landing / "amazon" / "returns_2024-05-02.tsv",
        AMAZON_HEADER,
        [amazon_row("RMA-A", "Approved"), amazon_row("RMA-B", "Approved")],
        "\t",
    )
    delimited(
        landing / "amazon" / "returns_2024-05-09.tsv",
        AMAZON_HEADER,
        [amazon_row("RMA-A", "Closed", **{"Return delivery date": "2024-05-08T15:00:00Z"})],
        "\t",
    )

    result = land_files(con, landing)["amazon_returns"]

    assert (result.files_landed, result.rows) == (2, 3)
    got = rows(
        con,
        "amazon_returns",
        "amazon_rma_id, report_date, return_request_status, return_delivery_date",
        order="amazon_rma_id, report_date",
    )
    assert got == [
        {"amazon_rma_id": "RMA-A", "report_date": date(2024, 5, 2),
         "return_request_status": "Approved", "return_delivery_date": None},
        {"amazon_rma_id": "RMA-A", "report_date": date(2024, 5, 9),
         "return_request_status": "Closed", "return_delivery_date": utc(2024, 5, 8, 15)},
        {"amazon_rma_id": "RMA-B", "report_date": date(2024, 5, 2),
         "return_request_status": "Approved", "return_delivery_date": None},
    ]  # fmt: skip


def test_amazon_bad_rows_dead_lettered_rest_lands(landing, con):
    good = amazon_row("RMA-1")
    no_rma = amazon_row("")
    bad_qty = amazon_row("RMA-3", **{"Return quantity": "1.5"})
    bad_time = amazon_row("RMA-4", **{"Order date": "20/04/2024"})
    bad_money = amazon_row("RMA-5", **{"Refunded Amount": "$59.98"})
    path = delimited(
        landing / "amazon" / "returns_2024-05-02.tsv",
        AMAZON_HEADER,
        [good, no_rma, bad_qty, bad_time, bad_money],
        "\t",
    )
    with open(path, "a") as handle:
        handle.write("too\tfew\tfields\n")

    result = land_files(con, landing)["amazon_returns"]

    assert (result.rows, result.dead_letters) == (1, 5)
    assert [r["amazon_rma_id"] for r in rows(con, "amazon_returns")] == ["RMA-1"]
    sha = sha256_of(path)
    letters = dead_letters(con, "amazon")
    assert [pos for pos, _, _ in letters] == [f"{sha}:{n}" for n in (2, 3, 4, 5, 6)]
    assert [error for _, _, error in letters] == [
        "missing required field 'Amazon RMA ID'",
        "bad integer in 'Return quantity': '1.5'",
        "bad time in 'Order date': '20/04/2024'",
        "bad number in 'Refunded Amount': '$59.98'",
        f"row has 3 fields, the header has {len(AMAZON_HEADER)}",
    ]
    assert letters[1][1] == "\t".join(bad_qty.get(h, "") for h in AMAZON_HEADER)
    assert letters[4][1] == "too\tfew\tfields"


def test_amazon_extra_columns_kept(landing, con):
    header = [*AMAZON_HEADER, "Return Reason Detail", "Exchange order ID"]
    row = amazon_row(**{"Return Reason Detail": "screen cracked", "Exchange order ID": ""})
    delimited(landing / "amazon" / "returns_2024-05-02.tsv", header, [row], "\t")

    land_files(con, landing)

    [got] = rows(con, "amazon_returns")
    assert json.loads(got["_extra"]) == {
        "Return Reason Detail": "screen cracked",
        "Exchange order ID": None,
    }


def test_amazon_optional_columns_may_be_missing(landing, con):
    header = ["Order ID", "Amazon RMA ID", "Merchant SKU", "Return quantity"]
    delimited(landing / "amazon" / "returns_2024-05-02.tsv", header, [amazon_row()], "\t")

    result = land_files(con, landing)["amazon_returns"]

    assert result.rows == 1 and not result.quarantined
    [row] = rows(con, "amazon_returns")
    assert row["return_request_status"] is None and row["return_quantity"] == 2


# -- B2B credit requests -----------------------------------------------------------------------


def test_b2b_happy_path_with_quoting(landing, con):
    # quoted delimiters and doubled quotes; a record is one physical line (DESIGN §12: a quoted
    # line break is refused, tests/hostile/test_delimited.py)
    quoted = b2b_row("B2B-000124", reason_code='DAMAGED, "crushed" in transit')
    path = landing / "b2b" / "requests_2024-05-04.csv"
    import csv

    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, B2B_HEADER)
        writer.writeheader()
        writer.writerows(
            [b2b_row(), quoted, b2b_row("B2B-000125", approved_at="", status="submitted")]
        )

    result = land_files(con, landing)["b2b_credit_requests"]

    assert (result.rows, result.dead_letters) == (3, 0)
    got = rows(con, "b2b_credit_requests")
    assert [r["_row_number"] for r in got] == [1, 2, 3]  # the line numbers after the header
    first = got[0]
    assert first["quantity"] == Decimal("3") and first["unit_price"] == Decimal("12.5")
    assert first["requested_at"] == utc(2024, 5, 3, 6)
    assert first["approved_at"] == utc(2024, 5, 4)
    assert got[1]["reason_code"] == 'DAMAGED, "crushed" in transit'
    assert got[2]["approved_at"] is None and got[2]["status"] == "submitted"


def test_b2b_bad_rows_and_extra_columns(landing, con):
    header = [*B2B_HEADER, "portal_user"]
    good = b2b_row(portal_user="u-17")
    no_sku = b2b_row("B2B-2", sku="")
    bad_qty = b2b_row("B2B-3", quantity="three", unit_price="1e3")
    path = delimited(landing / "b2b" / "r.csv", header, [good, no_sku, bad_qty], ",")

    result = land_files(con, landing)["b2b_credit_requests"]

    assert (result.rows, result.dead_letters) == (1, 2)
    [row] = rows(con, "b2b_credit_requests")
    assert json.loads(row["_extra"]) == {"portal_user": "u-17"}
    sha = sha256_of(path)
    assert [(p, e) for p, _, e in dead_letters(con, "b2b")] == [
        (f"{sha}:2", "missing required field 'sku'"),
        (f"{sha}:3", "bad number in 'quantity': 'three'; bad number in 'unit_price': '1e3'"),
    ]


# -- reference crosswalks ----------------------------------------------------------------------


def test_reference_snapshots(landing, con):
    sku = landing / "reference" / "sku_crosswalk.csv"
    write(sku, "channel,channel_sku,erp_product_code\nshopify,IPOD2008BLACK,P-100\n")
    write(landing / "reference" / "warehouse_crosswalk.csv", "dc_code,erp_warehouse_code\n"
          "DC-EAST,WH-E\nDC-WEST,WH-W\n")  # fmt: skip

    first = land_files(con, landing)
    write(
        sku, "channel,channel_sku,erp_product_code\nshopify,IPOD2008BLACK,P-100\namazon,A1,P-100\n"
    )
    second = land_files(con, landing, sources=["reference"])
    third = land_files(con, landing, sources=["reference"])  # identical re-drop: skipped

    assert first["sku_crosswalk"].rows == 1 and first["warehouse_crosswalk"].rows == 2
    assert second["sku_crosswalk"].rows == 2 and second["warehouse_crosswalk"].files_skipped == 1
    assert third["sku_crosswalk"].files_skipped == 1 and third["sku_crosswalk"].rows == 0
    snapshots = con.execute(
        "select _file_sha256, count(*), min(_ingested_at) from raw.sku_crosswalk "
        "group by all order by 3"
    ).fetchall()
    assert [n for _, n, _ in snapshots] == [1, 2]  # staging takes the newest snapshot
    assert snapshots[1][0] == sha256_of(sku)


# -- ledger, quarantine, atomicity -------------------------------------------------------------


def test_same_file_twice_lands_once(landing, con):
    ndjson(landing / "returns_saas" / "a.ndjson", [webhook()])
    ndjson(landing / "shopify" / "a.ndjson", [refund()])
    delimited(landing / "amazon" / "returns_2024-05-02.tsv", AMAZON_HEADER, [amazon_row()], "\t")
    delimited(landing / "b2b" / "a.csv", B2B_HEADER, [b2b_row()], ",")
    tables = ["returns_saas_webhooks", "shopify_refunds", "amazon_returns", "b2b_credit_requests"]

    first = land_files(con, landing)
    counts = {t: count(con, t) for t in tables}
    # the same bytes again, and a copy under another name
    (landing / "b2b" / "copy.csv").write_bytes((landing / "b2b" / "a.csv").read_bytes())
    second = land_files(con, landing)

    assert all(first[t].files_landed == 1 for t in tables)
    assert {t: count(con, t) for t in tables} == counts == dict.fromkeys(tables, 1)
    assert all(second[t].files_landed == 0 and second[t].rows == 0 for t in tables)
    assert second["b2b_credit_requests"].files_skipped == 2
    assert con.execute("select count(*) from meta.files_landed").fetchone()[0] == 4
    assert pending_files(landing, con) == []


@pytest.mark.parametrize(
    ("source", "name", "text", "reason"),
    [
        ("amazon", "amazon/returns_2024-05-02.tsv",
         "Order ID\tMerchant SKU\tReturn quantity\n1\tS\t1\n",
         "header is missing required column(s) 'Amazon RMA ID'"),
        ("amazon", "amazon/returns_latest.tsv", "\t".join(AMAZON_HEADER) + "\n",
         "file name 'returns_latest.tsv' is not returns_<YYYY-MM-DD>.tsv"),
        ("b2b", "b2b/r.csv", "request_id;sku;quantity;status\nB-1;S;1;approved\n",
         "header is missing required column(s) 'request_id', 'sku', 'quantity', 'status'"),
        ("b2b", "b2b/empty.csv", "", "empty file: no header row"),
        ("reference", "reference/sku_crosswalk.csv", "channel,sku,erp_product_code\n",
         "header is missing required column(s) 'channel_sku'"),
        ("reference", "reference/warehouse_crosswalk.csv", "dc_code,dc_code,erp_warehouse_code\n",
         "duplicate header column(s): 'dc_code'"),
    ],
)  # fmt: skip
def test_wrong_header_is_quarantined_and_landing_continues(
    landing, con, source, name, text, reason
):
    bad = write(landing / name, text)
    sha = sha256_of(bad)
    ndjson(landing / "shopify" / "ok.ndjson", [refund()])
    delimited(landing / "b2b" / "ok.csv", B2B_HEADER, [b2b_row()], ",")

    result = land_files(con, landing)

    [quarantined] = [q for s in result.values() for q in s.quarantined]
    assert quarantined.path == name and reason in quarantined.reason
    assert not bad.exists()
    moved = landing / quarantined.quarantined_path
    assert moved.read_text() == text
    assert moved.parent == landing / QUARANTINE_DIR / source
    assert con.execute(
        "select source, path, quarantined_path, reason from meta.quarantine where sha256 = ?", [sha]
    ).fetchone() == (source, name, quarantined.quarantined_path, quarantined.reason)
    assert result["shopify_refunds"].rows == 1 and result["b2b_credit_requests"].rows == 1
    assert con.execute("select count(*) from meta.files_landed").fetchone()[0] == 2
    # the quarantine is outside every source's glob: never read again
    assert pending_files(landing, con) == []
    assert sum(s.files_landed + s.quarantined_files for s in land_files(con, landing).values()) == 0


def test_rows_and_ledger_commit_together(landing, con, monkeypatch):
    import pipelines.lib.files.landing as landing_module

    ndjson(landing / "shopify" / "r.ndjson", [refund(1), "{broken"])

    def fail(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(landing_module, "write_dead_letters", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        land_files(con, landing)
    assert count(con, "shopify_refunds") == 0  # the rows inserted before the failure rolled back
    assert con.execute("select count(*) from meta.files_landed").fetchone()[0] == 0

    monkeypatch.undo()
    assert land_files(con, landing)["shopify_refunds"].rows == 1


def test_batches_stream_large_files(landing, con):
    ndjson(landing / "shopify" / "r.ndjson", [refund(i) for i in range(1, 8)] + ["{x"])
    delimited(landing / "b2b" / "r.csv", B2B_HEADER, [b2b_row(f"B-{i}") for i in range(7)], ",")

    result = land_files(con, landing, batch_rows=3)

    assert result["shopify_refunds"].rows == 7 and result["shopify_refunds"].dead_letters == 1
    assert result["b2b_credit_requests"].rows == 7
    numbers = [r["_row_number"] for r in rows(con, "b2b_credit_requests", "_row_number")]
    assert numbers == list(range(1, 8))


def test_pending_files_lists_new_files_only(landing, con):
    a = ndjson(landing / "shopify" / "a.ndjson", [refund()])
    land_files(con, landing)
    b = ndjson(landing / "shopify" / "b.ndjson", [refund(2)])
    write(landing / "shopify" / ".c.ndjson.part", "partial upload")

    assert pending_files(landing, con) == [("shopify", b, sha256_of(b))]
    assert [p for _, p, _ in pending_files(landing, None)] == [a, b]


def test_sources_filter(landing, con):
    ndjson(landing / "shopify" / "a.ndjson", [refund()])
    delimited(landing / "b2b" / "a.csv", B2B_HEADER, [b2b_row()], ",")

    result = land_files(con, landing, sources=["b2b"])

    assert list(result) == ["b2b_credit_requests"]
    assert count(con, "shopify_refunds") == 0
    with pytest.raises(ValueError, match="unknown file source"):
        land_files(con, landing, sources=["ftp"])


# -- the simulator's landscape (DESIGN §9) -----------------------------------------------------


def test_simulated_landscape_lands_with_exactly_the_expected_dead_letters(tmp_path, con):
    import csv

    from returnsync_sim import SimOptions, simulate

    landing = tmp_path / "sim"
    simulate(300, 11, landing, datetime(2024, 6, 30, tzinfo=UTC), SimOptions(), progress=False)
    file_sources = {"returns_saas", "shopify", "amazon", "b2b", "reference"}
    with open(landing / "expected_dead_letters.csv", newline="") as handle:
        expected = {
            (r["source"], r["position"])
            for r in csv.DictReader(handle)
            if r["source"] in file_sources
        }

    first = land_files(con, landing)
    second = land_files(con, landing)

    got = set(con.execute("select source, position from meta.dead_letters").fetchall())
    assert got == expected
    assert sum(s.dead_letters for s in first.values()) == len(expected)
    assert all(s.rows > 0 for s in first.values())
    assert sum(s.files_landed + s.rows + s.quarantined_files for s in second.values()) == 0
    assert (landing / QUARANTINE_DIR).exists() == any(s.quarantined for s in first.values())
