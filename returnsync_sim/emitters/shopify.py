"""Shopify (shopify/): the refund objects of a return (with their transactions, failed ones
first), as weekly NDJSON files."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from decimal import Decimal

from pipelines.lib.contracts import FILE_SOURCE_BY_TABLE

from .. import reference as ref
from ..plan import Return, iso_local, money
from .common import week

CONTRACT = FILE_SOURCE_BY_TABLE["shopify_refunds"]  # its entry in the source registry
SOURCE = CONTRACT.source
CHANNEL = "shopify"
MALFORMED = ("not_json", "missing_key", "wrong_type")


def carries(r: Return) -> bool:
    """A corrupted copy needs a record of this return to corrupt: a refund."""
    return bool(r.refunds)


def emit(sim, r: Return, rng: random.Random, bad: list[str]) -> None:
    off = ref.LOCAL_OFFSETS[r.currency]
    objs = []
    for rf in r.refunds:
        rid = sim.next_id("shopify_refund")
        items = []
        for (ln, q), amount in zip(rf.items, rf.item_amounts(), strict=True):
            sub = ln.product.price * q
            tax = amount - sub
            items.append(
                {
                    "id": 800_000_000 + sim.next_id("shopify_refund_line"),
                    "quantity": q,
                    "line_item_id": ln.shop_line_item_id,
                    "location_id": 40_000 + r.warehouse,
                    "restock_type": "return",
                    "subtotal": money(sub),
                    "total_tax": money(tax),
                    "line_item": {
                        "id": ln.shop_line_item_id,
                        "variant_id": 39_000_000 + ln.product.index,
                        "title": ln.product.name,
                        "quantity": ln.ordered,
                        "price": money(ln.product.price),
                        "sku": ln.channel_sku,
                        "vendor": None,
                        "fulfillment_service": "manual",
                        "product_id": 632_000_000 + ln.product.index,
                        "requires_shipping": True,
                        "taxable": tax > 0,
                        "gift_card": False,
                        "name": ln.product.name,
                        "properties": [],
                        "product_exists": True,
                        "total_discount": "0.00",
                        "fulfillment_status": "fulfilled",
                    },
                }
            )
        order_id = 5_000_000_000 + r.index
        txs = []

        def tx(status: str, at: datetime, amount: Decimal, order_id: int = order_id) -> dict:
            return {
                "id": 170_000_000 + sim.next_id("shopify_tx"),
                "order_id": order_id,
                "kind": "refund",
                "gateway": "shopify_payments",
                "status": status,
                "message": None if status == "success" else "Card declined",
                "created_at": iso_local(at, off),
                "test": False,
                "authorization": None,
                "amount": money(amount),
                "currency": r.currency,
                "location_id": None,
                "user_id": None,
                "parent_id": 160_000_000 + r.index,
                "device_id": None,
                "receipt": {},
                "error_code": None,
                "source_name": "web",
            }

        if rf.status == "failure" or rf.failed_first:
            txs.append(tx("failure", rf.at - timedelta(minutes=5), rf.amount))
            if rf.failed_first:
                sim.noise_counts["shopify_failed_then_success"] += 1
        if rf.status == "success":
            txs.append(tx("success", rf.at, rf.amount))
        obj = {
            "id": 509_000_000 + rid,
            "order_id": order_id,
            "created_at": iso_local(rf.at - timedelta(seconds=30), off),
            "processed_at": iso_local(rf.at, off),
            "note": "Return " + r.rma,
            "restock": True,
            "user_id": None,
            "refund_line_items": items,
            "transactions": txs,
            "order_adjustments": [],
        }
        objs.append(obj)
    for obj in objs:
        sim.write_json_line("shopify", file_for(obj), obj)
        if rng.random() < sim.opt.rate("duplicate_rate"):
            sim.write_json_line("shopify", file_for(obj), obj)
            sim.noise_counts["shopify_duplicate_refund"] += 1
    for kind in bad:
        obj = objs[0]
        rel = file_for(obj)
        if kind == "not_json":
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
            w = sim.file(rel)
            w.write_line(text[: len(text) // 3])
            sim.file_records["shopify"] += 1
            row = w.lines
        elif kind == "missing_key":
            row = sim.write_json_line(
                "shopify", rel, {k: v for k, v in obj.items() if k != "order_id"}
            )
        else:
            row = sim.write_json_line("shopify", rel, {**obj, "id": f"R{obj['id']}"})
        sim.dead.append(("shopify", (sim.file(rel), row)))


def file_for(obj: dict) -> str:
    return f"{CONTRACT.folder}/refunds_{week(datetime.fromisoformat(obj['created_at']))}.ndjson"
