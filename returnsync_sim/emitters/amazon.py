"""Amazon (amazon/): the weekly returns report (TSV, Amazon's columns), a return's rows in the
report of its request and of its final state, some repeated in the next report."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal

from pipelines.lib.contracts import AMAZON_COLUMNS, FILE_SOURCE_BY_TABLE

from .. import reference as ref
from ..plan import Line, Return, iso_local, money
from .common import order_ref

CONTRACT = FILE_SOURCE_BY_TABLE["amazon_returns"]  # its entry in the source registry
SOURCE = CONTRACT.source
CHANNEL = "amazon"
MALFORMED = ("wrong_type",)


def report_for(sim, t: datetime) -> date:
    last = sim.as_of.date()
    k = (last - t.date()).days // 7
    return last - timedelta(days=7 * k)


def emit(sim, r: Return, rng: random.Random, bad: list[str]) -> None:
    final_at = max(r.times())
    rows: list[tuple[date, list[str]]] = []
    first_report = report_for(sim, r.approved_at)
    final_report = report_for(sim, final_at)
    closed = r.state == "closed"
    refunded = r.amazon_refund_at is not None
    status = "Closed" if closed and refunded else "Approved"
    for ln in r.lines:
        if final_report != first_report:
            rows.append((first_report, report_row(r, ln, "Approved", None, None)))
        final = report_row(r, ln, status, ln.total if refunded else None, r.amazon_delivery)
        rows.append((final_report, final))
        nxt = final_report + timedelta(days=7)
        if nxt <= sim.as_of.date() and rng.random() < sim.opt.rate("amazon_overlap_rate"):
            rows.append((nxt, final))
            sim.noise_counts["amazon_overlap_row"] += 1
    header = list(AMAZON_COLUMNS)
    for d, row in rows:
        sim.file(f"{CONTRACT.folder}/returns_{d.isoformat()}.tsv", header, "\t").write_row(row)
        sim.file_records["amazon"] += 1
    for _kind in bad:
        d, row = rows[-1]
        w = sim.file(f"{CONTRACT.folder}/returns_{d.isoformat()}.tsv", header, "\t")
        broken = list(row)
        broken[header.index("Return quantity")] = "two"
        n = w.write_row(broken)
        sim.file_records["amazon"] += 1
        sim.dead.append(("amazon", (w, n)))


def report_row(
    r: Return, ln: Line, status: str, refunded: Decimal | None, delivery: datetime | None
) -> list[str]:
    off = -420 if r.currency == "USD" else ref.LOCAL_OFFSETS[r.currency]
    values = {
        "Order ID": order_ref(r),
        "Order date": iso_local(r.order_at, off),
        "Return request date": iso_local(r.approved_at, off),
        "Return request status": status,
        "Amazon RMA ID": r.rma,
        "Merchant RMA ID": "",
        "Label type": "AmazonUnPaidLabel",
        "Label cost": "0.00",
        "Currency code": r.currency,
        "Return carrier": "UPS",
        "Tracking ID": r.tracking,
        "Label to be paid by": "Customer",
        "A-to-z claim": "N",
        "Is prime": "Y" if r.index % 2 else "N",
        "ASIN": ln.product.asin,
        "Merchant SKU": ln.channel_sku,
        "Item Name": ln.product.name,
        "Return quantity": str(ln.qty),
        "Return reason": ref.AMAZON_REASONS[ln.reason][0],
        "In policy": "Y",
        "Return type": "C-Returns",
        "Resolution": "StandardRefund",
        "Invoice number": "",
        "Return delivery date": iso_local(delivery, off) if delivery else "",
        "Order Amount": money(ln.product.price * ln.ordered),
        "Order quantity": str(ln.ordered),
        "SafeT action reason": "",
        "SafeT claim id": "",
        "SafeT claim state": "",
        "SafeT claim creation time": "",
        "SafeT claim reimbursement amount": "",
        "Refunded Amount": money(refunded) if refunded is not None else "",
        "Category": "Sports",
    }
    return [values[c] for c in AMAZON_COLUMNS]
