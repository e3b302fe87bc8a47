"""A hand-worked returns landscape written straight into the raw tables (no landing code).

`EVENTS` is the history of every source as it happened; `land_clean` writes it once in order,
`land_noisy` writes the same history the way real delivery does: every change delivered twice,
out of order, older versions arriving late, webhooks redelivered, Amazon reports and B2B files
overlapping. The marts must come out the same either way (tests/dbt/test_canonical_model.py).

The returns (amounts in the return's currency; taxes included):
- LR-1001 (Shopify via returns SaaS, EUR): partial return of 2 of 3 P10001 plus 1 P10002; the
  P10001 receipt is split over two inspections (1 restock, 1 scrap); ERP credit note 154.70
  and a Shopify refund 154.70 (a failed transaction beside the successful one moves nothing).
- LR-1002 (Shopify, USD): exchange; the receipt has no RMA, only the tracking number; closed.
- LR-1003 (Shopify, GBP): keep-item refund: credited and refunded 60.00, nothing received.
- D5nk2RrqRRMA (Amazon, USD): refunded 107.25 in the newer report; the receipt's RMA is
  upper-cased (linked on letters and digits); closed.
- CR-20001 (B2B, EUR): receipt scanned as `cr 20001`; inspected, not posted; a draft credit note.
- LR-1004 (Shopify, EUR): its SKU has no crosswalk entry.
- receipt 3006: scanned `XX-999`, links to nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import duckdb

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
INGESTED = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def naive(hours: float) -> datetime:
    """A Tryton `timestamp` (UTC, no zone)."""
    return at(hours).replace(tzinfo=None)


@dataclass
class Cdc:
    table: str  # raw table, e.g. erp_sale_sale
    op: str  # c u d r t
    row: dict[str, Any]
    lsn: int | None
    tombstone: bool = False


@dataclass
class FileRow:
    table: str
    file: str
    row: dict[str, Any]


@dataclass
class Landscape:
    cdc: list[Cdc] = field(default_factory=list)
    files: list[FileRow] = field(default_factory=list)


PK = {"wms_receipts": "receipt_id", "wms_inspections": "inspection_id"}


def _build() -> Landscape:
    ls = Landscape()
    lsn = iter(range(100, 100_000, 10))

    def cdc(table, op, **row):
        ls.cdc.append(Cdc(table, op, row, next(lsn)))

    def f(table, file, **row):
        ls.files.append(FileRow(table, file, row))

    # -- reference ---------------------------------------------------------------------------
    for dc, wh in (("DC-EAST", "WH-E"), ("DC-WEST", "WH-W")):
        f(
            "warehouse_crosswalk",
            "reference/warehouse_crosswalk.csv",
            dc_code=dc,
            erp_warehouse_code=wh,
        )
    for ch, sku, code in (
        ("shopify", "SH-10001", "P10001"),
        ("shopify", "SH-10002", "P10002"),
        ("shopify", "SH-10005", "P10005"),
        ("amazon", "AMZ-10003-FBM", "P10003"),
        ("b2b", "B2B10004", "P10004"),
    ):
        f(
            "sku_crosswalk",
            "reference/sku_crosswalk.csv",
            channel=ch,
            channel_sku=sku,
            erp_product_code=code,
        )

    # -- ERP master data ---------------------------------------------------------------------
    for cid, code in ((1, "EUR"), (2, "USD"), (3, "GBP")):
        cdc("erp_currency_currency", "r", id=cid, code=code)
    cdc(
        "erp_stock_location",
        "r",
        id=1,
        code="CUSTOMER",
        name="Customer",
        type="customer",
        parent=None,
    )
    for wid, wh in ((10, "WH-E"), (20, "WH-W")):
        cdc("erp_stock_location", "r", id=wid, code=wh, name=wh, type="warehouse", parent=None)
        for off, suffix in ((1, "STO"), (2, "RFB"), (3, "SCR"), (4, "RTV")):
            cdc(
                "erp_stock_location",
                "r",
                id=wid + off,
                code=f"{wh}-{suffix}",
                name=suffix,
                type="storage",
                parent=wid,
            )
    for pid in range(1001, 1006):
        cdc("erp_product_product", "r", id=pid, code=f"P{10000 + pid - 1000}")

    def sale(sid, number, reference, currency, warehouse, origin, state, hours):
        cdc(
            "erp_sale_sale",
            "c",
            id=sid,
            number=number,
            reference=reference,
            party=1,
            currency=currency,
            warehouse=warehouse,
            sale_date=at(hours).date(),
            state="draft",
            origin=origin,
            create_date=naive(hours),
            write_date=naive(hours),
        )
        cdc(
            "erp_sale_sale",
            "u",
            id=sid,
            number=number,
            reference=reference,
            party=1,
            currency=currency,
            warehouse=warehouse,
            sale_date=at(hours).date(),
            state=state,
            origin=origin,
            create_date=naive(hours),
            write_date=naive(hours + 1),
        )

    def line(lid, sid, product, qty, price):
        cdc(
            "erp_sale_line",
            "c",
            id=lid,
            sale=sid,
            product=product,
            quantity=qty,
            unit_price=D(price),
            description=None,
        )

    def move(mid, product, qty, to, origin_line, hours, state="done"):
        cdc(
            "erp_stock_move",
            "c",
            id=mid,
            product=product,
            quantity=qty,
            from_location=1,
            to_location=to,
            shipment=f"stock.shipment.out.return,{mid}",
            origin=f"sale.line,{origin_line}",
            state="draft",
            effective_date=None,
            create_date=naive(hours),
            write_date=naive(hours),
        )
        cdc(
            "erp_stock_move",
            "u",
            id=mid,
            product=product,
            quantity=qty,
            from_location=1,
            to_location=to,
            shipment=f"stock.shipment.out.return,{mid}",
            origin=f"sale.line,{origin_line}",
            state=state,
            effective_date=at(hours).date(),
            create_date=naive(hours),
            write_date=naive(hours + 2),
        )

    def invoice(iid, number, currency, total, state, hours, lines):
        for op, st in (("c", "draft"), ("u", state)):
            cdc(
                "erp_account_invoice",
                op,
                id=iid,
                number=number,
                type="out",
                party=1,
                currency=currency,
                invoice_date=at(hours).date(),
                state=st,
                reference=None,
                description=None,
                total_amount_cache=D(total),
                create_date=naive(hours),
                write_date=naive(hours + (0 if op == "c" else 1)),
            )
        for ilid, product, qty, price, origin in lines:
            cdc(
                "erp_account_invoice_line",
                "c",
                id=ilid,
                invoice=iid,
                product=product,
                quantity=qty,
                unit_price=D(price),
                origin=f"sale.line,{origin}",
            )

    def receipt(rid, dc, rma, sku, qty, hours, tracking=None, serial=None):
        cdc(
            "wms_receipts",
            "c",
            receipt_id=rid,
            dc_code=dc,
            rma_number=rma,
            tracking_number=tracking,
            sku=sku,
            lot=None,
            serial=serial,
            quantity=D(qty),
            received_at=at(hours),
            license_plate=f"LP{rid}",
        )

    def inspection(iid, rid, grade, disposition, qty, hours):
        cdc(
            "wms_inspections",
            "c",
            inspection_id=iid,
            receipt_id=rid,
            grade=grade,
            disposition=disposition,
            quantity=D(qty),
            inspected_at=at(hours),
        )

    def webhook(wid, topic, hours, ret):
        f(
            "returns_saas_webhooks",
            "returns_saas/hooks.ndjson",
            webhook_id=wid,
            topic=topic,
            delivered_at=at(hours),
            payload=json.dumps(ret, default=str),
            **{("return_id" if k == "id" else k): v for k, v in ret.items()},
        )

    def saas(
        rid, rma, state, created, updated, order_id, name, currency, outcome, total, tracking, items
    ):
        return dict(
            id=rid,
            rma=rma,
            state=state,
            created_at=at(created),
            updated_at=at(updated),
            order_id=order_id,
            order_name=name,
            currency=currency,
            outcome=outcome,
            total_refund=D(total),
            tracking_number=tracking,
            line_items=items,
        )

    def item(iid, provider, sku, qty, price, refund, reason, parent):
        return dict(
            line_item_id=iid,
            provider_line_item_id=provider,
            sku=sku,
            quantity=qty,
            price=D(price),
            refund=D(refund),
            return_reason=reason,
            parent_return_reason=parent,
        )

    # -- LR-1001: partial return, split inspection, EUR ----------------------------------------
    items_1001 = [
        item(1, 7001, "SH-10001", 2, "50.00", "119.00", "Too small", "Size"),
        item(2, 7002, "SH-10002", 1, "30.00", "35.70", "Defective", "Quality"),
    ]
    webhook(
        "w-1001-a",
        "return.created",
        0,
        saas(
            501,
            "LR-1001",
            "open",
            0,
            0,
            9001,
            "#1001",
            "EUR",
            "refund",
            "154.70",
            "TRK1001",
            items_1001,
        ),
    )
    sale(100, "S100", "#1001", 1, 10, None, "done", -100)
    line(1001, 100, 1001, 3.0, "50")
    line(1002, 100, 1002, 1.0, "30")
    sale(101, "S101", "LR-1001", 1, 10, "sale.sale,100", "processing", 1)
    cdc(
        "erp_sale_line",
        "c",
        id=1011,
        sale=101,
        product=1001,
        quantity=-3.0,
        unit_price=D("50"),
        description=None,
    )
    cdc(
        "erp_sale_line",
        "u",
        id=1011,
        sale=101,
        product=1001,
        quantity=-2.0,
        unit_price=D("50"),
        description=None,
    )
    line(1012, 101, 1002, -1.0, "30")
    receipt(3001, "DC-EAST", "LR-1001", "P10001", "2", 48, tracking="TRK1001", serial="SN-1")
    receipt(3002, "DC-EAST", "LR-1001", "P10002", "1", 48)
    inspection(4001, 3001, "A", "RESTOCK", "1", 50)
    inspection(4002, 3001, "C", "SCRAP", "1", 50)
    inspection(4003, 3002, "B", "REFURBISH", "1", 51)
    move(5001, 1001, 1.0, 11, 1011, 60)
    move(5002, 1001, 1.0, 13, 1011, 60)
    move(5003, 1002, 1.0, 12, 1012, 61)
    invoice(
        601,
        "CN601",
        1,
        "-154.70",
        "posted",
        72,
        [(6011, 1001, -2.0, "50", 1011), (6012, 1002, -1.0, "30", 1012)],
    )
    f(
        "shopify_refunds",
        "shopify/refunds.ndjson",
        id=801,
        order_id=9001,
        created_at=at(70),
        processed_at=at(70.5),
        note=None,
        refund_line_items=[
            dict(
                id=8011,
                line_item_id=7001,
                quantity=2,
                restock_type="return",
                subtotal=D("100.00"),
                total_tax=D("19.00"),
                line_item=dict(id=7001, sku="SH-10001", price=D("50.00")),
            ),
            dict(
                id=8012,
                line_item_id=7002,
                quantity=1,
                restock_type="return",
                subtotal=D("30.00"),
                total_tax=D("5.70"),
                line_item=dict(id=7002, sku="SH-10002", price=D("30.00")),
            ),
        ],
        transactions=[
            dict(
                id=1,
                kind="refund",
                status="failure",
                amount=D("154.70"),
                currency="EUR",
                gateway="x",
            ),
            dict(
                id=2,
                kind="refund",
                status="success",
                amount=D("154.70"),
                currency="EUR",
                gateway="x",
            ),
        ],
    )

    # -- LR-1002: exchange, receipt linked by tracking number, closed, USD ----------------------
    items_1002 = [item(3, 7003, "SH-10005", 1, "40.00", "0", "Too large", "Size")]
    webhook(
        "w-1002-a",
        "return.created",
        2,
        saas(
            502,
            "LR-1002",
            "open",
            2,
            2,
            9002,
            "#1002",
            "USD",
            "exchange",
            "0",
            "1Z999AA1",
            items_1002,
        ),
    )
    sale(102, "S102", "LR-1002", 2, 20, "sale.sale,99", "processing", 3)
    line(1021, 102, 1005, -1.0, "40")
    receipt(3003, "DC-WEST", None, "P10005", "1", 30, tracking="1z 999 aa1")
    inspection(4004, 3003, "A", "RESTOCK", "1", 31)
    move(5004, 1005, 1.0, 21, 1021, 40)
    webhook(
        "w-1002-b",
        "return.closed",
        80,
        saas(
            502,
            "LR-1002",
            "closed",
            2,
            80,
            9002,
            "#1002",
            "USD",
            "exchange",
            "0",
            "1Z999AA1",
            items_1002,
        ),
    )

    # -- LR-1003: keep-item refund, GBP ---------------------------------------------------------
    items_1003 = [item(4, 7004, "SH-10001", 1, "50.00", "60.00", "Damaged in shipping", "Shipping")]
    webhook(
        "w-1003-a",
        "return.created",
        4,
        saas(
            503,
            "LR-1003",
            "open",
            4,
            4,
            9003,
            "#1003",
            "GBP",
            "keep_item",
            "60.00",
            None,
            items_1003,
        ),
    )
    sale(103, "S103", "LR-1003", 3, 10, "sale.sale,98", "processing", 5)
    line(1031, 103, 1001, -1.0, "50")
    invoice(602, "CN602", 3, "-60.00", "paid", 6, [(6021, 1001, -1.0, "50", 1031)])
    f(
        "shopify_refunds",
        "shopify/refunds.ndjson",
        id=802,
        order_id=9003,
        created_at=at(5),
        processed_at=at(5.5),
        note=None,
        refund_line_items=[
            dict(
                id=8021,
                line_item_id=7004,
                quantity=1,
                restock_type="no_restock",
                subtotal=D("50.00"),
                total_tax=D("10.00"),
                line_item=dict(id=7004, sku="SH-10001", price=D("50.00")),
            ),
        ],
        transactions=[
            dict(
                id=3,
                kind="refund",
                status="success",
                amount=D("60.00"),
                currency="GBP",
                gateway="x",
            )
        ],
    )
    f(
        "shopify_refunds",
        "shopify/refunds.ndjson",
        id=803,
        order_id=9003,
        created_at=at(6),
        processed_at=at(6),
        note="declined",
        refund_line_items=[],
        transactions=[
            dict(
                id=4,
                kind="refund",
                status="failure",
                amount=D("60.00"),
                currency="GBP",
                gateway="x",
            )
        ],
    )

    # -- Amazon D5nk2RrqRRMA: USD, the newer report wins ----------------------------------------
    def amazon(report, status, refunded, delivered):
        f(
            "amazon_returns",
            f"amazon/returns_{report}.tsv",
            report_date=date.fromisoformat(report),
            order_id="111-2223334-5556667",
            order_date=at(-200),
            return_request_date=at(8),
            return_request_status=status,
            amazon_rma_id="D5nk2RrqRRMA",
            merchant_rma_id="",
            currency_code="USD",
            tracking_id="TBA123",
            merchant_sku="AMZ-10003-FBM",
            return_quantity=1,
            return_reason="CR-DEFECTIVE",
            resolution="StandardRefund",
            return_delivery_date=delivered,
            order_amount=D("100.00"),
            order_quantity=1,
            refunded_amount=D(refunded),
        )

    amazon("2026-03-02", "Approved", "0", None)
    sale(104, "S104", "D5nk2RrqRRMA", 2, 10, "sale.sale,97", "processing", 9)
    line(1041, 104, 1003, -1.0, "100")
    receipt(3004, "DC-EAST", "D5NK2RRQRRMA", "P10003", "1", 70)
    inspection(4006, 3004, "B", "RETURN_TO_VENDOR", "1", 71)
    move(5005, 1003, 1.0, 14, 1041, 72)
    invoice(603, "CN603", 2, "-107.25", "posted", 75, [(6031, 1003, -1.0, "100", 1041)])
    amazon("2026-03-05", "Closed", "107.25", at(69))

    # -- B2B CR-20001: mistyped RMA on the receipt, EUR ----------------------------------------
    def b2b(file, status, approved):
        f(
            "b2b_credit_requests",
            file,
            request_id="CR-20001",
            account_number="ACC-7",
            po_number="PO-77",
            erp_order_number="S97",
            sku="B2B10004",
            quantity=D("5"),
            unit_price=D("12.50"),
            currency="EUR",
            reason_code="DEF",
            requested_at=at(10),
            status=status,
            approved_at=approved,
        )

    b2b("b2b/requests_1.csv", "submitted", None)
    b2b("b2b/requests_2.csv", "approved", at(12))
    sale(105, "S105", "CR-20001", 1, 20, "sale.sale,96", "processing", 13)
    line(1051, 105, 1004, -5.0, "12.50")
    receipt(3005, "DC-WEST", "cr 20001", "P10004", "5", 40)
    inspection(4005, 3005, "C", "REFURBISH", "5", 41)
    invoice(604, "CN604", 1, "-74.38", "draft", 42, [(6041, 1004, -5.0, "12.50", 1051)])

    # -- LR-1004: unmapped SKU ------------------------------------------------------------------
    webhook(
        "w-1004-a",
        "return.created",
        20,
        saas(
            504,
            "LR-1004",
            "open",
            20,
            20,
            9004,
            "#1004",
            "EUR",
            "refund",
            "0",
            None,
            [item(5, 7005, "SH-UNKNOWN", 1, "9.99", "0", "Nope", None)],
        ),
    )

    # -- an unmatched receipt, and a stock move created then deleted ------------------------------
    receipt(3006, "DC-EAST", "XX-999", "P10002", "1", 90)
    move(5099, 1002, 1.0, 11, 1012, 62)
    cdc("erp_stock_move", "d", id=5099)
    ls.cdc.append(Cdc("erp_stock_move", "d", {"id": 5099}, None, tombstone=True))
    return ls


EVENTS = _build()


# -- writing raw rows ---------------------------------------------------------------------------


class RawWriter:
    """Inserts raw rows with the metadata the landing code would give them."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.offsets: dict[str, int] = {}
        self.file_rows: dict[str, int] = {}

    def cdc(self, ev: Cdc, ingested_at: datetime = INGESTED) -> None:
        prefix, table = ev.table.split("_", 1)
        topic = f"{prefix}.public.{table}"
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        pk = PK.get(ev.table, "id")
        key = None if ev.op == "t" else json.dumps({pk: ev.row[pk]})
        ts_ms = None if ev.lsn is None else 1_772_000_000_000 + ev.lsn
        meta = {
            "_topic": topic,
            "_partition": 0,
            "_offset": offset,
            "_op": ev.op,
            "_is_tombstone": ev.tombstone,
            "_source_lsn": ev.lsn,
            "_source_ts_ms": ts_ms,
            "_source_tx_id": None,
            "_changed_at": None if ts_ms is None else datetime.fromtimestamp(ts_ms / 1000, UTC),
            "_ingested_at": ingested_at,
            "_key": key,
        }
        self._insert(ev.table, {**meta, **ev.row})

    def file(self, fr: FileRow, ingested_at: datetime = INGESTED, copy: int = 0) -> None:
        name = fr.file if not copy else fr.file.replace(".", f"_copy{copy}.", 1)
        n = self.file_rows.get(name, 0) + 1
        self.file_rows[name] = n
        meta = {
            "_file": name,
            "_file_sha256": hashlib.sha256(name.encode()).hexdigest(),
            "_row_number": n,
            "_ingested_at": ingested_at,
        }
        self._insert(fr.table, {**meta, **fr.row})

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        self.con.execute(f"insert into raw.{table} ({cols}) values ({marks})", list(row.values()))


def land_clean(con: duckdb.DuckDBPyConnection) -> None:
    """Every change once, in the order it happened."""
    w = RawWriter(con)
    for ev in EVENTS.cdc:
        w.cdc(ev)
    for fr in EVENTS.files:
        w.file(fr)


def noisy_batches(seed: int = 7) -> list[list[tuple[str, Any]]]:
    """The same history as two landing batches, noisy: every CDC change twice, shuffled (so older
    versions arrive after newer ones), webhooks redelivered and in reverse order, file drops
    overlapping (older Amazon report and submitted B2B rows landed again after the newer ones),
    the Shopify refunds file dropped twice under another name."""
    rng = random.Random(seed)
    cdc = [("cdc", ev) for ev in EVENTS.cdc for _ in range(2)]
    rng.shuffle(cdc)
    files = [("file", fr) for fr in EVENTS.files]
    hooks = [x for x in files if x[1].table == "returns_saas_webhooks"]
    others = [x for x in files if x[1].table != "returns_saas_webhooks"]
    late = [
        ("file", fr) for fr in EVENTS.files if fr.table in ("amazon_returns", "b2b_credit_requests")
    ]
    late = [(kind, fr) for kind, fr in late if "2026-03-02" in fr.file or "requests_1" in fr.file]
    copies = [("file_copy", fr) for fr in EVENTS.files if fr.table == "shopify_refunds"]
    half = len(cdc) // 2
    batch1 = cdc[:half] + list(reversed(hooks)) + others
    batch2 = cdc[half:] + hooks + late + copies
    return [batch1, batch2]


def land_batch(
    con: duckdb.DuckDBPyConnection, writer: RawWriter, batch, ingested_at: datetime
) -> None:
    for kind, item in batch:
        if kind == "cdc":
            writer.cdc(item, ingested_at)
        elif kind == "file":
            writer.file(item, ingested_at)
        else:
            writer.file(item, ingested_at, copy=1)
