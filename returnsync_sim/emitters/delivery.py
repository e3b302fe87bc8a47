"""CDC delivery noise: reordered, duplicated and late change events of one return's ERP and WMS
changes, and corrupted copies (dead letters)."""

from __future__ import annotations

import random

from ..cdc import Change


def write_changes(
    sim, i: int, rng: random.Random, changes: list[Change], malformed: list[str]
) -> None:
    out = list(changes)
    # a newer change of a row delivered before its older one (lsn still orders them)
    for j in range(1, len(out)):
        if out[j].op == "u" and rng.random() < sim.opt.rate("reorder_rate"):
            k = max(
                x for x in range(j) if out[x].key == out[j].key and out[x].table is out[j].table
            )
            out[k], out[j] = out[j], out[k]
            sim.noise_counts["cdc_reordered"] += 1
    tail = []
    for ch in out:
        if rng.random() < sim.opt.rate("duplicate_rate"):
            tail.append(ch)
            sim.noise_counts["cdc_duplicates"] += 1
    for ch in out + tail:
        if getattr(ch, "tombstone", False):
            sim.cdc.write(ch)
            sim.cdc.write_tombstone(ch)
        elif rng.random() < sim.opt.rate("late_rate"):
            sim.late.append((i + rng.randint(1, 40), ch))
            sim.noise_counts["cdc_late"] += 1
        else:
            sim.cdc.write(ch)
    for kind in malformed:
        victims = [
            c
            for c in out
            if c.after is not None
            and (
                kind != "bad_number"
                or any(k.startswith("decimal(") for k in c.table.columns.values())
            )
        ]
        sim.cdc.write_malformed(rng.choice(victims), kind)


def release_late(sim, i: int | None) -> None:
    if not sim.late:
        return
    keep = []
    for due, ch in sim.late:
        if i is None or due <= i:
            sim.cdc.write(ch)
        else:
            keep.append((due, ch))
    sim.late = keep
