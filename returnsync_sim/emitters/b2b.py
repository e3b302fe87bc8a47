"""B2B portal (b2b/): credit requests, one CSV row per line, weekly files; and one file with a
wrong header (quarantined by the product)."""

from __future__ import annotations

import random

from pipelines.lib.contracts import FILE_SOURCE_BY_TABLE

from .. import reference as ref
from ..plan import Return, iso_z, money
from .common import order_ref, week

CONTRACT = FILE_SOURCE_BY_TABLE["b2b_credit_requests"]  # its entry in the source registry
SOURCE = CONTRACT.source
CHANNEL = "b2b"
MALFORMED = ("wrong_type",)
HEADER = list(CONTRACT.columns)  # the portal's CSV header is the contract's columns
QUARANTINE_PATH = f"{CONTRACT.folder}/credit_requests_legacy.csv"


def emit(sim, r: Return, rng: random.Random, bad: list[str]) -> None:
    req_at = r.requested_at or r.approved_at
    rel = f"{CONTRACT.folder}/credit_requests_{week(req_at)}.csv"
    w = sim.file(rel, HEADER)
    rows = []
    for ln in r.lines:
        rows.append(
            [
                r.rma,
                f"ACC-{r.party:06d}",
                order_ref(r),
                getattr(r, "_sale_number", ""),
                ln.channel_sku,
                str(ln.qty),
                money(ln.product.price),
                r.currency,
                ref.B2B_REASONS[ln.reason][0],
                iso_z(req_at),
                r.b2b_status,
                iso_z(r.approved_at) if r.b2b_status == "approved" else "",
            ]
        )
    for row in rows:
        w.write_row(row)
        sim.file_records["b2b"] += 1
        if rng.random() < sim.opt.rate("duplicate_rate"):
            w.write_row(row)
            sim.file_records["b2b"] += 1
            sim.noise_counts["b2b_duplicate_row"] += 1
        if len(sim.b2b_sample) < 3:
            sim.b2b_sample.append(row)
    for _kind in bad:
        broken = list(rows[0])
        broken[HEADER.index("quantity")] = "one and a half"
        n = w.write_row(broken)
        sim.file_records["b2b"] += 1
        sim.dead.append(("b2b", (w, n)))
