"""WMS (CDC): the receipts and inspections of one return, and the extra receipts of the
unmatched-receipt scenarios (no return of ours behind them)."""

from __future__ import annotations

import random
from decimal import Decimal

from .. import faults
from .. import reference as ref
from ..cdc import Change
from ..plan import Receipt, Return, mistype
from ..scenarios import Scenario


def emit(sim, r: Return, rng: random.Random, out: list[Change]) -> None:
    dc = ref.WAREHOUSES[r.warehouse][0]
    for ln in r.lines:
        for rc in ln.receipts:
            scan = rc.rma_scan
            if scan == r.rma:  # noise that changes no answer: typos, missing labels
                u = rng.random()
                if u < sim.opt.rate("mistyped_rma_rate"):
                    scan = mistype(r.rma, rng)
                    sim.noise_counts["wms_mistyped_rma"] += 1
                elif r.channel != "b2b" and u < sim.opt.rate("mistyped_rma_rate") + sim.opt.rate(
                    "tracking_only_rate"
                ):
                    scan = None
                    sim.noise_counts["wms_tracking_only"] += 1
            tracking = rc.tracking if r.channel != "b2b" else None
            receipt(sim, out, dc, scan, tracking, ln.product, rc, rng)


def receipt(
    sim,
    out: list[Change],
    dc: str,
    scan: str | None,
    tracking: str | None,
    product: ref.Product,
    rc: Receipt,
    rng: random.Random,
) -> None:
    rid = sim.next_id("receipt")
    lot = f"L{rc.at:%y%m}-{product.index:03d}" if product.index % 3 == 0 else None
    serial = f"SN{rid:09d}" if product.index % 5 == 0 and rc.qty == 1 else None
    out.append(
        sim.cdc.change(
            "wms",
            "receipts",
            "c",
            {
                "receipt_id": rid,
                "dc_code": dc,
                "rma_number": scan,
                "tracking_number": tracking,
                "sku": product.code,
                "lot": lot,
                "serial": serial,
                "quantity": Decimal(rc.qty),
                "received_at": rc.at,
                "license_plate": f"LP{rid:08d}",
                "dock": f"D{rid % 12 + 1}",
            },
            rc.at,
        )
    )
    for ins in rc.inspections:
        out.append(
            sim.cdc.change(
                "wms",
                "inspections",
                "c",
                {
                    "inspection_id": sim.next_id("inspection"),
                    "receipt_id": rid,
                    "grade": {
                        "RESTOCK": "A",
                        "REFURBISH": "B",
                        "SCRAP": "D",
                        "RETURN_TO_VENDOR": "C",
                    }[ins.disposition],
                    "disposition": ins.disposition,
                    "quantity": Decimal(ins.qty),
                    "inspected_at": ins.at,
                },
                ins.at,
            )
        )


def extra_receipt(sim, i: int, rng: random.Random, scen: Scenario, out: list[Change]) -> None:
    wh = rng.randrange(3)
    age = faults.PLANS[scen.name].receipt_age(sim.planner, rng, scen.name)
    rc = Receipt(rng.choice((1, 1, 2)), sim.as_of - age)
    product = rng.choice(sim.products)
    foreign = f"RT-{i:07d}"
    scan: str | None = rng.choice((foreign, foreign.lower(), f" {foreign} ", f" {foreign.lower()}"))
    expected = []
    if scen.name == "unmatched_receipt_no_rma":
        free = [p for p in sim.products if p.index not in sim.no_rma_skus]
        if free:
            product = rng.choice(free)
            sim.no_rma_skus.add(product.index)
            scan = None
        else:  # every sku already has a no-RMA fault: keep the key unique
            scan = foreign
    tracking = f"1ZX{rng.randrange(16**6):06X}{i:010d}"
    if scen.rules:
        key_rma = (scan or "").strip().upper()
        expected = [("unmatched_receipt", key_rma, product.code)]
    sim.record_scenario(scen, "wms", (scan or "").strip().upper(), expected)
    receipt(sim, out, ref.WAREHOUSES[wh][0], scan, tracking, product, rc, rng)
