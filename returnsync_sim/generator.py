"""Builds the landscape return by return (streaming, bounded memory) and the answer key.

The orchestrator: for each return it draws the scenario, has the planner plan it (planner.py,
each scenario's own plan in faults.py), has each source's emitter write its records
(emitters/), records the answer key, and calls the observers (observers.py).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
from collections import Counter
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
from tqdm import tqdm

from pipelines.lib.contracts import FILE_SOURCES

from . import reference as ref
from .cdc import MALFORMED_KINDS, CdcWriter, Change
from .emitters import FILE_EMITTERS, amazon, crosswalks, delivery, erp, wms
from .emitters.b2b import HEADER as B2B_HEADER
from .emitters.b2b import QUARANTINE_PATH
from .emitters.common import order_ref
from .files import CsvWriter, HashedWriter
from .observers import load_observers
from .options import NEW_OPTIONS, SimOptions
from .plan import (
    CENT,
    CreditNote,
    Inspection,
    Line,
    Move,
    Receipt,
    Refund,
    Return,
    hours,
    iso_local,
    iso_z,
    midnight,
    mistype,
    money,
    ts,
)
from .planner import CHANNEL_WEIGHTS, CLEAN_STAGES, Planner
from .scenarios import BY_NAME, COMBO_BY_NAME, COMBOS, SCENARIOS, SKU_RULES, Scenario

# the plan types stay importable from here (observers and tests use them)
__all__ = [
    "B2B_HEADER",
    "CENT",
    "CHANNEL_WEIGHTS",
    "CLEAN_STAGES",
    "FILE_MALFORMED",
    "OUTPUT_DIRS",
    "OUTPUT_FILES",
    "QUARANTINE_PATH",
    "CreditNote",
    "Inspection",
    "Line",
    "Move",
    "Receipt",
    "Refund",
    "Return",
    "SimOptions",
    "Simulator",
    "hours",
    "iso_local",
    "iso_z",
    "midnight",
    "mistype",
    "money",
    "simulate",
    "ts",
]

# the landing folders a landscape replaces: the CDC files and every file source's folder
OUTPUT_DIRS = ("cdc", *dict.fromkeys(fs.folder for fs in FILE_SOURCES))
OUTPUT_FILES = (
    "expected_mismatches.csv",
    "expected_dead_letters.csv",
    "landscape.json",
    "scenarios.csv",
)
FILE_MALFORMED = {e.SOURCE: e.MALFORMED for e in FILE_EMITTERS}


class Simulator:
    def __init__(
        self,
        n_returns: int,
        seed: int,
        out: Path,
        as_of: datetime,
        options: SimOptions | None = None,
        progress: bool = True,
    ) -> None:
        self.n = n_returns
        self.seed = seed
        self.out = Path(out)
        self.as_of = as_of.astimezone(UTC).replace(microsecond=0)
        self.opt = options or SimOptions()
        self.progress = progress
        self.products = ref.products()
        self.n_parties = max(50, min(n_returns // 3, 100_000))
        self.snapshot_at = self.as_of - hours(2400)
        self.ids: Counter = Counter()
        self.key: set[tuple[str, str, str]] = set()
        self.scenario_counts: Counter = Counter()
        self.stage_counts: Counter = Counter()
        self.noise_counts: Counter = Counter()
        self.file_counts: Counter = Counter()
        self.file_records: Counter = Counter()
        self.dead: list[tuple[str, object]] = []
        self.quarantined: list[dict] = []
        self.late: list[tuple[int, Change]] = []
        self.no_rma_skus: set[int] = set()
        self._files: dict[str, HashedWriter] = {}
        self.b2b_sample: list[list[str]] = []
        self.pending_bad: list[tuple[str, str]] = []
        enabled = self.opt.scenarios
        if enabled is not None:
            unknown = set(enabled) - set(BY_NAME) - set(COMBO_BY_NAME)
            if unknown:
                raise ValueError(f"unknown scenarios: {sorted(unknown)}")
        self.faults = [
            s for s in SCENARIOS if s.kind == "fault" and (enabled is None or s.name in enabled)
        ]
        self.near = [
            s for s in SCENARIOS if s.kind == "near_miss" and (enabled is None or s.name in enabled)
        ]
        self.combos = [
            c
            for c in COMBOS
            if self.opt.multi_fault_rate > 0 and (enabled is None or c.name in enabled)
        ]
        self.planner = Planner(self.as_of, self.opt, self.products, self.n_parties, self.next_id)
        self.margin = self.planner.margin
        self.observers = load_observers()  # answer-key extensions (observers.py)

    # -- ids -------------------------------------------------------------------------------------
    def next_id(self, kind: str) -> int:
        self.ids[kind] += 1
        return self.ids[kind]

    # what observers read of the emitters' conventions
    def order_ref(self, r: Return) -> str:
        return order_ref(r)

    def report_for(self, t: datetime) -> date:
        """The Amazon report (its date) that first shows a change at `t`."""
        return amazon.report_for(self, t)

    # -- output files ----------------------------------------------------------------------------
    def file(self, rel: str, header: list[str] | None = None, delimiter: str = ",") -> HashedWriter:
        w = self._files.get(rel)
        if w is None:
            path = self.out / rel
            w = CsvWriter(path, header, delimiter) if header else HashedWriter(path)
            self._files[rel] = w
            self.file_counts[rel.split("/")[0]] += 1
        return w

    def write_json_line(self, source: str, rel: str, obj: dict) -> int:
        self.file_records[source] += 1
        return self.file(rel).write_line(orjson.dumps(obj).decode())

    # -- main ------------------------------------------------------------------------------------
    def run(self) -> dict:
        for d in OUTPUT_DIRS:
            shutil.rmtree(self.out / d, ignore_errors=True)
        for name in OUTPUT_FILES + tuple(f for obs in self.observers for f in obs.files):
            (self.out / name).unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cdc = CdcWriter(
            self.out,
            self.seed,
            self.opt.partitions,
            wrapped_rate=self.opt.rate("wrapped_rate"),
            mixed_encodings=self.opt.noise,
        )
        self.scen_file = CsvWriter(
            self.out / "scenarios.csv", ["scenario", "kind", "channel", "rma_number", "expected"]
        )
        crosswalks.write(self)
        erp.write_snapshot(self)
        forced = (
            (self.faults + self.near + self.combos)
            if (self.opt.cover_all_scenarios and self.opt.fault_rate > 0)
            else []
        )
        malformed_plan = self._malformed_plan()
        bar = tqdm(
            total=self.n,
            desc="simulate",
            unit="return",
            file=sys.stderr,
            disable=not self.progress,
            mininterval=0.5,
        )
        for i in range(self.n):
            rng = random.Random(self.seed * 1_000_003 + i)
            if i < len(forced):
                scen = forced[i]
            else:
                u = rng.random()
                if u < self.opt.fault_rate and self.faults:
                    scen = rng.choice(self.faults)
                elif u < self.opt.fault_rate + self.opt.near_misses and self.near:
                    scen = rng.choice(self.near)
                elif (
                    u < self.opt.fault_rate + self.opt.near_misses + self.opt.multi_fault_rate
                    and self.combos
                ):
                    scen = rng.choice(self.combos)
                else:
                    scen = None
            self.one_return(i, rng, scen, malformed_plan.get(i, ()))
            delivery.release_late(self, i)
            if i % 256 == 255:
                bar.update(256)
        bar.update(self.n - bar.n)
        bar.close()
        delivery.release_late(self, None)
        return self.finish()

    def _malformed_plan(self) -> dict[int, list[tuple[str, str]]]:
        """Which returns carry a corrupted record copy: each kind at least once, then at rate."""
        plan: dict[int, list[tuple[str, str]]] = {}
        if not self.opt.noise or self.n == 0:
            return plan
        kinds = [("cdc", k) for k in MALFORMED_KINDS]
        kinds += [(src, k) for src, ks in FILE_MALFORMED.items() for k in ks]
        rng = random.Random(self.seed * 31 + 17)
        for j, kind in enumerate(kinds):
            plan.setdefault((j * 7 + 3) % self.n, []).append(kind)
        for i in range(self.n):
            if rng.random() < self.opt.malformed_rate:
                plan.setdefault(i, []).append(rng.choice(kinds))
        return plan

    # -- one return ------------------------------------------------------------------------------
    def one_return(
        self, i: int, rng: random.Random, scen: Scenario | None, malformed: list[tuple[str, str]]
    ) -> None:
        extra = scen if (scen is not None and scen.extra_receipt) else None
        main = None if extra else scen
        channels = main.channels if main else ref.CHANNELS
        channel = rng.choices(channels, weights=[CHANNEL_WEIGHTS[c] for c in channels])[0]
        r = self.planner.plan(i, rng, channel, main)
        expected: list[tuple[str, str, str]] = []
        if main is not None:
            keys = main.keys if main.kind == "combo" else [(rule, 0) for rule in main.rules]
            for rule, j in keys:
                sku = ""
                if rule in SKU_RULES:
                    ln = r.lines[j]
                    sku = ln.channel_sku if rule == "unmapped_sku" else ln.product.code
                expected.append((rule, r.rma, sku))
            self.record_scenario(main, channel, r.rma, expected)
        else:
            self.stage_counts[f"{channel}:{r.stage}"] += 1
        changes: list[Change] = []
        erp.emit(self, r, rng, changes)
        wms.emit(self, r, rng, changes)
        if extra is not None:
            wms.extra_receipt(self, i, rng, extra, changes)
        pending, self.pending_bad = self.pending_bad, []
        self.emit_channel(r, rng, [m for m in malformed if m[0] != "cdc"] + pending)
        delivery.write_changes(self, i, rng, changes, [k for s, k in malformed if s == "cdc"])
        for obs in self.observers:
            obs.on_return(self, r, main, expected)

    def record_scenario(
        self, scen: Scenario, channel: str, rma: str, expected: list[tuple[str, str, str]]
    ) -> None:
        self.scenario_counts[scen.name] += 1
        for row in expected:
            assert row not in self.key, row
            self.key.add(row)
        self.scen_file.write_row(
            [
                scen.name,
                scen.kind,
                channel,
                rma,
                ";".join(f"{rule}:{sku}" for rule, _, sku in expected),
            ]
        )

    def emit_channel(self, r: Return, rng: random.Random, bad: list[tuple[str, str]]) -> None:
        """Channel files; corrupted copies this return cannot carry wait for a later return."""
        feeds = [e for e in FILE_EMITTERS if r.channel == e.CHANNEL]
        mine = [
            (s, k)
            for s, k in bad
            for e in feeds
            if s == e.SOURCE and getattr(e, "carries", lambda _r: True)(r)
        ]
        self.pending_bad += [(s, k) for s, k in bad if (s, k) not in mine]
        for e in feeds:
            e.emit(self, r, rng, [k for s, k in mine if s == e.SOURCE])

    # -- closing ---------------------------------------------------------------------------------
    def finish(self) -> dict:
        if self.opt.noise and self.opt.quarantine_file and self.b2b_sample:
            header = ["request_no", *B2B_HEADER[1:]]
            w = self.file(QUARANTINE_PATH, header)
            for row in self.b2b_sample:
                w.write_row(row)
            self.quarantined.append(
                {
                    "source": "b2b",
                    "path": QUARANTINE_PATH,
                    "reason": "header has request_no where the contract requires request_id",
                }
            )
        self.cdc.close()
        for w in self._files.values():
            w.close()
        self.scen_file.close()
        dead = self.cdc.resolved_dead_letters()
        for source, (w, row) in self.dead:
            dead.append((source, f"{w.sha256}:{row}"))
        with open(self.out / "expected_dead_letters.csv", "w", encoding="utf-8", newline="") as f:
            wr = csv.writer(f, lineterminator="\n")
            wr.writerow(["source", "position"])
            wr.writerows(sorted(dead))
        with open(self.out / "expected_mismatches.csv", "w", encoding="utf-8", newline="") as f:
            wr = csv.writer(f, lineterminator="\n")
            wr.writerow(["rule", "rma_number", "sku"])
            wr.writerows(sorted(self.key))
        by_rule = Counter(rule for rule, _, _ in self.key)
        summary = {
            "seed": self.seed,
            "as_of": iso_z(self.as_of),
            "returns": self.n,
            "options": {
                k: (sorted(v) if isinstance(v, frozenset) else v)
                for k, v in asdict(self.opt).items()
                if k not in NEW_OPTIONS or v != NEW_OPTIONS[k]  # a seed's old output stays
            },
            "counts": {
                "cdc_records": dict(sorted(self.cdc.counts.items())),
                "file_records": dict(sorted(self.file_records.items())),
                "files": dict(sorted(self.file_counts.items())),
                "parties": self.n_parties,
                "products": len(self.products),
            },
            "scenarios": dict(sorted(self.scenario_counts.items())),
            "clean_stages": dict(sorted(self.stage_counts.items())),
            "noise": dict(sorted(self.noise_counts.items())),
            "expected_mismatches": dict(sorted(by_rule.items())),
            "expected_mismatch_rows": len(self.key),
            "dead_letters": len(dead),
            "quarantined": self.quarantined,
        }
        for obs in self.observers:
            extra = obs.finish(self, self.out)
            if extra is not None:
                summary[obs.name] = extra
        with open(self.out / "landscape.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return summary


def simulate(
    n_returns: int,
    seed: int,
    out: Path | str,
    as_of: datetime | None = None,
    options: SimOptions | None = None,
    progress: bool = True,
) -> dict:
    """Write a landscape of `n_returns` returns to `out`; returns the landscape.json summary."""
    as_of = as_of or datetime.now(UTC)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return Simulator(n_returns, seed, Path(out), as_of, options, progress).run()
