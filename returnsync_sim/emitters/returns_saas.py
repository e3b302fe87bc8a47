"""The returns SaaS (returns_saas/): one webhook delivery per event of a Shopify return, with
delivery noise (late, out of order, duplicated), as weekly NDJSON files."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from pipelines.lib.contracts import FILE_SOURCE_BY_TABLE

from .. import reference as ref
from ..plan import Return, hours, iso_local, iso_z, money, ts
from .common import order_ref, week

CONTRACT = FILE_SOURCE_BY_TABLE["returns_saas_webhooks"]  # its entry in the source registry
SOURCE = CONTRACT.source
CHANNEL = "shopify"
MALFORMED = ("not_json", "missing_key", "wrong_type")


def payload(r: Return, at: datetime, state: str, closed: bool) -> dict:
    off = ref.LOCAL_OFFSETS[r.currency]
    first, last = ref.party_name(r.party)
    reasons = ref.SAAS_REASONS
    refund_total = Decimal(0)
    items = []
    for ln in r.lines:
        refund = ln.total if closed and r.outcome in ("refund", "keep_item") else Decimal(0)
        refund_total += refund
        items.append(
            {
                "line_item_id": ln.saas_line_item_id,
                "provider_line_item_id": ln.shop_line_item_id,
                "sku": ln.channel_sku,
                "title": ln.product.name,
                "quantity": ln.qty,
                "price": money(ln.product.price),
                "refund": money(refund),
                "return_reason": reasons[ln.reason][0],
                "parent_return_reason": reasons[ln.reason][1],
            }
        )
    return {
        "id": 100000 + r.index,
        "rma": r.rma,
        "state": state,
        "created_at": iso_local(r.approved_at, off),
        "updated_at": iso_local(at, off),
        "order_id": 5_000_000_000 + r.index,
        "order_name": order_ref(r),
        "currency": r.currency,
        "outcome": r.outcome,
        "total_refund": money(refund_total),
        "tracking_number": r.tracking,
        "line_items": items,
        "customer": {"first_name": first, "last_name": last, "email": ref.party_email(r.party)},
    }


def emit(sim, r: Return, rng: random.Random, bad: list[str]) -> None:
    for ln in r.lines:
        ln.saas_line_item_id = sim.next_id("saas_line")
        ln.shop_line_item_id = 13_000_000_000 + ln.sale_line_id
    events = [("return.created", r.approved_at, "review" if r.state == "review" else "open", False)]
    receipts = [rc.at for ln in r.lines for rc in ln.receipts]
    if receipts and min(receipts) < (r.state_at or sim.as_of):
        events.append(("return.updated", min(receipts), "open", False))
    if r.state == "closed":
        events.append(("return.closed", r.state_at, "closed", True))
    elif r.state == "cancelled":
        events.append(("return.cancelled", r.state_at, "cancelled", False))
    deliveries = []
    for topic, at, state, closed in events:
        delivered = at + timedelta(seconds=rng.randint(1, 120))
        if rng.random() < sim.opt.rate("out_of_order_rate"):
            delivered += hours(rng.uniform(1, 48))  # a late delivery
            sim.noise_counts["saas_late_delivery"] += 1
        delivered = min(delivered, sim.as_of)
        deliveries.append(
            {
                "webhook_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "topic": topic,
                "delivered_at": iso_z(delivered),
                "payload": payload(r, at, state, closed),
            }
        )
    if len(deliveries) > 1 and rng.random() < sim.opt.rate("out_of_order_rate"):
        deliveries.reverse()
        sim.noise_counts["saas_out_of_order"] += 1
    if rng.random() < sim.opt.rate("duplicate_rate"):
        dup = dict(rng.choice(deliveries))
        dup["delivered_at"] = iso_z(
            min(
                sim.as_of,
                datetime.fromisoformat(dup["delivered_at"]) + hours(rng.uniform(0.1, 6)),
            )
        )
        deliveries.append(dup)
        sim.noise_counts["saas_duplicate_delivery"] += 1
    for d in deliveries:
        rel = file_for(d)
        sim.write_json_line("returns_saas", rel, d)
    for kind in bad:
        d = deliveries[0]
        rel = file_for(d)
        if kind == "not_json":
            text = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
            w = sim.file(rel)
            w.write_line(text[: len(text) // 2])
            sim.file_records["returns_saas"] += 1
            row = w.lines
        elif kind == "missing_key":
            row = sim.write_json_line(
                "returns_saas", rel, {k: v for k, v in d.items() if k != "webhook_id"}
            )
        else:
            row = sim.write_json_line(
                "returns_saas",
                rel,
                {**d, "payload": {**d["payload"], "id": f"ret_{d['payload']['id']}"}},
            )
        sim.dead.append(("returns_saas", (sim.file(rel), row)))


def file_for(delivery: dict) -> str:
    return f"{CONTRACT.folder}/webhooks_{week(ts(delivery['delivered_at']))}.ndjson"
