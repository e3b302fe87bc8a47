"""Builds the landscape return by return (streaming, bounded memory) and the answer key."""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import orjson
from tqdm import tqdm

from pipelines.lib.contracts import AMAZON_COLUMNS

from . import reference as ref
from .cdc import MALFORMED_KINDS, CdcWriter, Change
from .files import CsvWriter, HashedWriter
from .observers import load_observers
from .scenarios import BY_NAME, COMBO_BY_NAME, COMBOS, SCENARIOS, SKU_RULES, Scenario

CENT = Decimal("0.01")
OUTPUT_DIRS = ("cdc", "returns_saas", "shopify", "amazon", "b2b", "reference")
OUTPUT_FILES = (
    "expected_mismatches.csv",
    "expected_dead_letters.csv",
    "landscape.json",
    "scenarios.csv",
)
B2B_HEADER = [
    "request_id",
    "account_number",
    "po_number",
    "erp_order_number",
    "sku",
    "quantity",
    "unit_price",
    "currency",
    "reason_code",
    "requested_at",
    "status",
    "approved_at",
]
QUARANTINE_PATH = "b2b/credit_requests_legacy.csv"
FILE_MALFORMED = {
    "returns_saas": ("not_json", "missing_key", "wrong_type"),
    "shopify": ("not_json", "missing_key", "wrong_type"),
    "amazon": ("wrong_type",),
    "b2b": ("wrong_type",),
}


@dataclass(frozen=True)
class SimOptions:
    """Every fault and noise family, each configurable. Rates are per return."""

    fault_rate: float = 0.1  # share of returns given one fault
    near_miss_rate: float | None = None  # share given a near miss (default: fault_rate / 2)
    scenarios: frozenset[str] | None = None  # enabled faults/near misses (None: all)
    cover_all_scenarios: bool = True  # first returns take each enabled scenario once
    noise: bool = True  # master switch for every delivery-noise family below
    duplicate_rate: float = 0.03  # duplicated Kafka records, webhook deliveries, Shopify refunds
    reorder_rate: float = 0.03  # a row's newer change delivered before its older one
    late_rate: float = 0.01  # a change delivered several returns later
    delete_rate: float = 0.02  # draft ERP documents created then deleted (+ tombstone)
    wrapped_rate: float = 0.05  # schema-wrapped envelopes, with mixed decimal/time encodings
    snapshot: bool = True  # reference tables and old orders as snapshot `r` events
    mistyped_rma_rate: float = 0.04  # receipts scanned with a recoverable RMA typo
    tracking_only_rate: float = 0.02  # receipts without RMA, matched by tracking number
    failed_transaction_rate: float = 0.03  # a failed refund transaction before the good one
    out_of_order_rate: float = 0.05  # webhook deliveries in reverse order, late deliveries
    amazon_overlap_rate: float = 0.3  # a final Amazon row repeated in the next report
    malformed_rate: float = 0.002  # corrupted record copies to dead-letter (each kind >= once)
    quarantine_file: bool = True  # one file with a wrong header
    partitions: int = 3
    # Off by default (a seed's default output never changes): a share of returns given two or
    # three interacting faults at once (scenarios.COMBOS), and how far inside its window a grace
    # near miss lies (3600: an hour; 1: one second, the edge itself).
    multi_fault_rate: float = 0.0
    near_miss_margin_s: int = 3600

    def rate(self, name: str) -> float:
        return getattr(self, name) if self.noise else 0.0

    @property
    def near_misses(self) -> float:
        return self.fault_rate / 2 if self.near_miss_rate is None else self.near_miss_rate


@dataclass
class Inspection:
    disposition: str
    qty: int
    at: datetime


@dataclass
class Receipt:
    qty: int
    at: datetime
    inspections: list[Inspection] = field(default_factory=list)
    rma_scan: str | None = None
    tracking: str | None = None


@dataclass
class Line:
    product: ref.Product
    qty: int
    ordered: int
    channel_sku: str
    reason: int
    tax: Decimal = Decimal(0)
    receipts: list[Receipt] = field(default_factory=list)
    sale_line_id: int = 0
    ret_line_id: int = 0
    shop_line_item_id: int = 0
    saas_line_item_id: int = 0

    @property
    def subtotal(self) -> Decimal:
        return self.product.price * self.qty

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax

    def unit_total(self, qty: int) -> Decimal:
        return (self.total * qty / self.qty).quantize(CENT, ROUND_HALF_UP)


@dataclass
class Move:
    line: Line
    warehouse: int
    disposition: str
    qty: int
    at: datetime


@dataclass
class Refund:  # a Shopify refund object
    at: datetime
    items: list[tuple[Line, int]]
    status: str = "success"  # success | failure | none (restock only, no transaction)
    failed_first: bool = False
    amounts: list[Decimal] | None = None  # per item, when not the pro-rata share

    def item_amounts(self) -> list[Decimal]:
        return self.amounts or [ln.unit_total(q) for ln, q in self.items]

    @property
    def amount(self) -> Decimal:
        return sum(self.item_amounts(), Decimal(0))


@dataclass
class CreditNote:
    at: datetime
    items: list[tuple[Line, int]]
    state: str = "posted"  # posted | paid | draft | cancelled
    currency: str = ""
    delta: Decimal = Decimal(0)  # ERP total minus the lines' total (injected faults)
    paid_at: datetime | None = None

    @property
    def total(self) -> Decimal:
        return sum((ln.unit_total(q) for ln, q in self.items), Decimal(0)) + self.delta


@dataclass
class Return:
    index: int
    channel: str
    stage: str
    rma: str
    currency: str
    party: int
    warehouse: int
    lines: list[Line]
    approved_at: datetime
    order_at: datetime
    outcome: str = "refund"
    tracking: str = ""
    state: str = "open"
    state_at: datetime | None = None  # closed/cancelled time
    erp_return: bool = True
    erp_at: datetime | None = None
    refunds: list[Refund] = field(default_factory=list)
    amazon_refund_at: datetime | None = None
    amazon_delivery: datetime | None = None
    credits: list[CreditNote] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    b2b_status: str = "approved"
    requested_at: datetime | None = None
    simple_lines: frozenset[int] = frozenset()  # lines with one receipt and one inspection

    def times(self) -> list[datetime]:
        ts = [self.approved_at, self.order_at]
        ts += [
            t
            for t in (
                self.state_at,
                self.erp_at,
                self.amazon_refund_at,
                self.amazon_delivery,
                self.requested_at,
            )
            if t
        ]
        for ln in self.lines:
            for rc in ln.receipts:
                ts.append(rc.at)
                ts += [i.at for i in rc.inspections]
        ts += [m.at for m in self.moves] + [r.at for r in self.refunds]
        ts += [c.at for c in self.credits]
        return ts

    def shift(self, delta: timedelta) -> None:
        def sh(t):
            return None if t is None else t + delta

        self.approved_at += delta
        self.order_at += delta
        self.state_at, self.erp_at = sh(self.state_at), sh(self.erp_at)
        self.amazon_refund_at, self.amazon_delivery = (
            sh(self.amazon_refund_at),
            sh(self.amazon_delivery),
        )
        self.requested_at = sh(self.requested_at)
        for ln in self.lines:
            for rc in ln.receipts:
                rc.at += delta
                for i in rc.inspections:
                    i.at += delta
        for m in self.moves:
            m.at += delta
        for r in self.refunds:
            r.at += delta
        for c in self.credits:
            c.at += delta
            c.paid_at = sh(c.paid_at)

    @property
    def received(self) -> bool:
        return any(ln.receipts for ln in self.lines)


def hours(x: float) -> timedelta:
    return timedelta(seconds=round(x * 3600))


def iso_z(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_local(dt: datetime, offset_min: int) -> str:
    """ISO-8601 with the local offset a channel prints (`+00:00` for UTC)."""
    return dt.astimezone(timezone(timedelta(minutes=offset_min))).isoformat()


def money(d: Decimal) -> str:
    return f"{d.quantize(CENT, ROUND_HALF_UP):.2f}"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


CLEAN_STAGES = {
    "shopify": (
        ("complete", 62),
        ("awaiting", 10),
        ("refunded_awaiting", 6),
        ("inspected_unposted", 6),
        ("received_uninspected", 4),
        ("cancelled", 3),
        ("exchange", 5),
        ("keep_item", 4),
    ),
    "amazon": (
        ("complete", 70),
        ("awaiting", 10),
        ("refunded_awaiting", 6),
        ("inspected_unposted", 7),
        ("received_uninspected", 7),
    ),
    "b2b": (
        ("complete", 65),
        ("awaiting", 12),
        ("refunded_awaiting", 5),
        ("inspected_unposted", 7),
        ("received_uninspected", 6),
        ("cancelled", 5),
    ),
}
CHANNEL_WEIGHTS = {"shopify": 5, "amazon": 3, "b2b": 2}


def _weighted(rng: random.Random, pairs) -> str:
    names = [p[0] for p in pairs]
    return rng.choices(names, weights=[p[1] for p in pairs])[0]


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
        self._b2b_sample: list[list[str]] = []
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
        self.margin = timedelta(seconds=self.opt.near_miss_margin_s)
        self.observers = load_observers()  # answer-key extensions (observers.py)

    # -- ids -------------------------------------------------------------------------------------
    def next_id(self, kind: str) -> int:
        self.ids[kind] += 1
        return self.ids[kind]

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
        self.write_reference()
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
            self._release_late(i)
            if i % 256 == 255:
                bar.update(256)
        bar.update(self.n - bar.n)
        bar.close()
        self._release_late(None)
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

    # -- reference data --------------------------------------------------------------------------
    def write_reference(self) -> None:
        w = self.file("reference/sku_crosswalk.csv", ["channel", "channel_sku", "erp_product_code"])
        for ch in ref.CHANNELS:
            for p in self.products:
                w.write_row([ch, p.channel_sku(ch), p.code])
                self.file_records["reference"] += 1
        w = self.file("reference/warehouse_crosswalk.csv", ["dc_code", "erp_warehouse_code"])
        for dc, code, _, _ in ref.WAREHOUSES:
            w.write_row([dc, code])
            self.file_records["reference"] += 1
        at = self.snapshot_at
        op = "r" if self.opt.snapshot else "c"
        snap = "true" if self.opt.snapshot else "false"
        changes = []
        for code, cid in ref.CURRENCIES.items():
            changes.append(
                self.cdc.change(
                    "erp",
                    "currency_currency",
                    op,
                    {"id": cid, "code": code, "name": code},
                    at,
                    snapshot=snap,
                )
            )
        locs = [
            {
                "id": ref.CUSTOMER_LOCATION_ID,
                "code": "CUS",
                "name": "Customer",
                "type": "customer",
                "parent": None,
            }
        ]
        for _, code, lid, name in ref.WAREHOUSES:
            locs.append(
                {"id": lid, "code": code, "name": name, "type": "warehouse", "parent": None}
            )
            for suffix, off in ref.DISPOSITIONS.values():
                locs.append(
                    {
                        "id": lid + off,
                        "code": f"{code}-{suffix}",
                        "name": f"{name} {ref.DISPOSITION_NAMES[suffix]}",
                        "type": "storage",
                        "parent": lid,
                    }
                )
        for loc in locs:
            changes.append(self.cdc.change("erp", "stock_location", op, loc, at, snapshot=snap))
        for p in self.products:
            changes.append(
                self.cdc.change(
                    "erp",
                    "product_product",
                    op,
                    {"id": p.id, "code": p.code, "template": p.id},
                    at,
                    snapshot=snap,
                )
            )
        for pid in range(1, self.n_parties + 1):
            first, last = ref.party_name(pid)
            changes.append(
                self.cdc.change(
                    "erp",
                    "party_party",
                    op,
                    {"id": pid, "code": f"C{pid:07d}", "name": f"{first} {last}"},
                    at,
                    snapshot=snap,
                )
            )
        if changes and self.opt.snapshot:
            changes[-1].snapshot = "last"
        for ch in changes:
            self.cdc.write(ch)

    # -- one return ------------------------------------------------------------------------------
    def one_return(
        self, i: int, rng: random.Random, scen: Scenario | None, malformed: list[tuple[str, str]]
    ) -> None:
        extra = scen if (scen is not None and scen.extra_receipt) else None
        main = None if extra else scen
        channels = main.channels if main else ref.CHANNELS
        channel = rng.choices(channels, weights=[CHANNEL_WEIGHTS[c] for c in channels])[0]
        r = self.plan(i, rng, channel, main)
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
        self.emit_erp(r, rng, changes)
        self.emit_wms(r, rng, changes)
        if extra is not None:
            self.extra_receipt(i, rng, extra, changes)
        pending, self.pending_bad = self.pending_bad, []
        self.emit_channel(r, rng, [m for m in malformed if m[0] != "cdc"] + pending)
        self.write_changes(i, rng, changes, [k for s, k in malformed if s == "cdc"])
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

    # -- planning --------------------------------------------------------------------------------
    def plan(self, i: int, rng: random.Random, channel: str, scen: Scenario | None) -> Return:
        name = scen.name if scen else ""
        combo = scen if scen is not None and scen.kind == "combo" else None
        if combo is not None:
            name = combo.base
        stage = "complete"
        if scen is None:
            stage = _weighted(rng, CLEAN_STAGES[channel])
        single = name in {
            "receipt_not_posted_at_boundary",
            "wrong_disposition_recent",
            "nm_posting_grace",
            "missing_credit_at_boundary",
            "nm_credit_grace",
        }
        currency = rng.choice(ref.CHANNEL_CURRENCIES[channel])
        n_lines = 1 if single else rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
        if combo is not None:
            n_lines = max(n_lines, combo.min_lines)
        picks = rng.sample(self.products, n_lines)
        need_two = name in {"posted_qty_short", "nm_split_refund"}
        lines = []
        for j, p in enumerate(picks):
            qty = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
            if j == 0 and need_two:
                qty = max(qty, 2)
            if combo is not None and ("posted_qty_short", j) in combo.overlays:
                qty = max(qty, 2)
            reasons = {
                "shopify": ref.SAAS_REASONS,
                "amazon": ref.AMAZON_REASONS,
                "b2b": ref.B2B_REASONS,
            }[channel]
            ln = Line(
                p,
                qty,
                qty + rng.choice((0, 0, 0, 1)),
                p.channel_sku(channel),
                rng.randrange(len(reasons)),
            )
            ln.tax = (ln.subtotal * ref.TAX_RATES[currency]).quantize(CENT, ROUND_HALF_UP)
            ln.sale_line_id = self.next_id("sale_line")
            ln.ret_line_id = self.next_id("sale_line")
            lines.append(ln)
        if name == "unmapped_sku":
            lines[0].channel_sku = f"{lines[0].channel_sku}-V{i}"
        rma = {"shopify": f"LR-{100000 + i}", "amazon": f"D{i:07d}RMA", "b2b": f"CR-{i:07d}"}[
            channel
        ]
        anchor = self.as_of
        r = Return(
            i,
            channel,
            stage,
            rma,
            currency,
            rng.randint(1, self.n_parties),
            rng.randrange(len(ref.WAREHOUSES)),
            lines,
            anchor,
            anchor - hours(rng.uniform(24, 300)),
        )
        r.tracking = f"1Z{rng.randrange(16**6):06X}{i:010d}"
        r.erp_at = anchor + hours(rng.uniform(0.1, 6))
        if channel == "b2b":
            r.requested_at = anchor - hours(rng.uniform(1, 48))
        if scen is None:
            self.plan_clean(r, rng, stage)
        elif combo is not None:
            self.plan_combo(r, rng, combo)
        else:
            self.plan_scenario(r, rng, name)
        return r

    def _receive(
        self,
        r: Return,
        rng: random.Random,
        start: datetime,
        compact: bool = False,
        simple_first: bool = False,
    ) -> datetime:
        """Receipts and inspections for every line from `start`; returns the last inspection."""
        last = start
        box_at = start + hours(rng.uniform(40, 150))
        for j, ln in enumerate(r.lines):
            simple = compact or (simple_first and j == 0) or j in r.simple_lines
            qty = ln.qty
            if not simple and qty >= 2 and rng.random() < 0.1:
                qty -= 1  # partial receipt: one unit never came back
            parts = [qty]
            if not simple and qty >= 2 and rng.random() < 0.15:
                parts = [qty - 1, 1]
            at = box_at if compact else box_at + hours(rng.uniform(0, 2))
            for k, pq in enumerate(parts):
                rc_at = at + (hours(rng.uniform(2, 48)) if k else timedelta(0))
                rc = Receipt(pq, rc_at, rma_scan=r.rma, tracking=r.tracking)
                dispositions = list(ref.DISPOSITIONS)
                first = rng.choices(dispositions, weights=(70, 15, 10, 5))[0]
                if not simple and pq >= 2 and rng.random() < 0.25:
                    second = rng.choice([d for d in dispositions if d != first])
                    split = [(first, pq - 1), (second, 1)]
                else:
                    split = [(first, pq)]
                for disp, iq in split:
                    lag = rng.uniform(1, 3) if compact else rng.uniform(1, 36)
                    ins = Inspection(disp, iq, rc_at + hours(lag))
                    rc.inspections.append(ins)
                    last = max(last, ins.at)
                ln.receipts.append(rc)
        return last

    def _post(self, r: Return, rng: random.Random) -> datetime:
        """Stock moves: one per (line, disposition location), after its last inspection."""
        last = r.approved_at
        for ln in r.lines:
            by_disp: dict[str, tuple[int, datetime]] = {}
            for rc in ln.receipts:
                for ins in rc.inspections:
                    q, t = by_disp.get(ins.disposition, (0, ins.at))
                    by_disp[ins.disposition] = (q + ins.qty, max(t, ins.at))
            for disp, (q, t) in by_disp.items():
                m = Move(ln, r.warehouse, disp, q, t + hours(rng.uniform(0.5, 12)))
                r.moves.append(m)
                last = max(last, m.at)
        return last

    def _refund(
        self,
        r: Return,
        rng: random.Random,
        at: datetime,
        split: bool = True,
        credit: bool = True,
        status: str = "success",
    ) -> datetime:
        """Channel refund at `at` (Shopify refunds / Amazon refunded amounts) + ERP credit."""
        last = at
        items = [(ln, ln.qty) for ln in r.lines]
        if r.channel == "shopify":
            groups = [items]
            if split and len(items) >= 2 and rng.random() < 0.2:
                groups = [items[:1], items[1:]]
            for k, g in enumerate(groups):
                t = at + (hours(rng.uniform(1, 24)) if k else timedelta(0))
                fail = status == "success" and rng.random() < self.opt.rate(
                    "failed_transaction_rate"
                )
                r.refunds.append(Refund(t, g, status, failed_first=fail))
                last = max(last, self._credit(r, rng, t, g) if credit else t)
        elif r.channel == "amazon":
            r.amazon_refund_at = at
            if credit:
                last = self._credit(r, rng, at, items)
        elif credit:
            last = self._credit(r, rng, at, items)
        return last

    def _credit(self, r: Return, rng: random.Random, at: datetime, items) -> datetime:
        t = at + hours(rng.uniform(0.5, 20))
        paid = t + hours(rng.uniform(24, 100)) if rng.random() < 0.5 else None
        r.credits.append(CreditNote(t, list(items), "posted", r.currency, paid_at=paid))
        return t

    def _place(self, r: Return, end: datetime, age: timedelta) -> None:
        """Shift the whole return so that `end` lies `age` before as_of."""
        r.shift(self.as_of - age - end)

    def plan_clean(self, r: Return, rng: random.Random, stage: str) -> None:
        A = r.approved_at
        if stage == "complete":
            self._complete(r, rng)
            self._place(r, max(r.times()), hours(rng.uniform(2, 1500)))
        elif stage == "awaiting":
            if r.channel == "shopify" and rng.random() < 0.1:
                r.state = "review"
            if r.channel == "b2b" and rng.random() < 0.5:
                r.b2b_status, r.erp_return = "submitted", False
            self._place(r, A, hours(rng.uniform(30, 600)))
        elif stage == "refunded_awaiting":
            end = self._refund(r, rng, A + hours(rng.uniform(1, 12)), split=False)
            self._place(r, A, hours(rng.uniform(max(40, (end - A) / timedelta(hours=1) + 2), 250)))
        elif stage == "inspected_unposted":
            end = self._receive(r, rng, A, compact=True)
            self._place(r, end, hours(rng.uniform(2, 12)))
        elif stage == "received_uninspected":
            end = self._receive(r, rng, A, compact=True)
            for ln in r.lines:
                for rc in ln.receipts:
                    rc.inspections.clear()
            end = max(rc.at for ln in r.lines for rc in ln.receipts)
            self._place(r, end, hours(rng.uniform(1, 20)))
        elif stage == "cancelled":
            if r.channel == "b2b":
                r.b2b_status, r.erp_return = "rejected", False
                r.state_at = A
            else:
                r.state, r.state_at = "cancelled", A + hours(rng.uniform(2, 100))
            self._place(r, max(r.times()), hours(rng.uniform(1, 1500)))
        elif stage == "exchange":
            r.outcome = rng.choice(("exchange", "store_credit"))
            end = self._receive(r, rng, A)
            end = max(end, self._post(r, rng))
            if rng.random() < 0.5:  # a restock-only refund object: no transaction, no money
                r.refunds.append(Refund(end + hours(1), [(ln, ln.qty) for ln in r.lines], "none"))
                end += hours(1)
            r.state, r.state_at = "closed", end
            self._place(r, max(r.times()), hours(rng.uniform(2, 1500)))
        elif stage == "keep_item":
            self._keep_item(r, rng)
            self._place(r, max(r.times()), hours(rng.uniform(2, 1500)))
        else:  # pragma: no cover
            raise ValueError(stage)

    def _keep_item(self, r: Return, rng: random.Random) -> None:
        r.outcome = "keep_item"
        end = self._refund(r, rng, r.approved_at + hours(rng.uniform(0.5, 24)), split=False)
        r.state, r.state_at = "closed", end

    def _complete(
        self,
        r: Return,
        rng: random.Random,
        simple_first: bool = False,
        refund: bool = True,
        credit: bool = True,
        refund_last: bool = False,
        split: bool = True,
        status: str = "success",
    ) -> datetime:
        A = r.approved_at
        last_ins = self._receive(r, rng, A, simple_first=simple_first)
        end = max(last_ins, self._post(r, rng))
        first_rc = min(rc.at for ln in r.lines for rc in ln.receipts)
        last_rc = max(rc.at for ln in r.lines for rc in ln.receipts)
        if r.channel == "amazon":
            r.amazon_delivery = first_rc if (refund_last or rng.random() < 0.8) else None
        if refund:
            if r.channel == "b2b":
                at = last_ins + hours(rng.uniform(2, 48))
            elif refund_last:
                at = end + hours(rng.uniform(1, 10))
            else:
                at = last_rc + hours(rng.uniform(1, 30))
            if r.channel == "amazon":
                r.amazon_delivery = r.amazon_delivery and min(r.amazon_delivery, at)
            end = max(end, self._refund(r, rng, at, split=split, credit=credit, status=status))
        r.state, r.state_at = "closed", end
        return end

    def plan_scenario(self, r: Return, rng: random.Random, name: str) -> None:
        A = r.approved_at
        ln0 = r.lines[0]
        old = hours(rng.uniform(36, 800))
        if name == "receipt_not_posted":
            self._complete(r, rng)
            r.moves = [m for m in r.moves if m.line is not ln0]
            self._place(r, max(r.times()), old)
        elif name in ("receipt_not_posted_at_boundary", "nm_posting_grace"):
            end = self._receive(r, rng, A, compact=True)
            self._place(
                r, end, hours(24) - (self.margin if name == "nm_posting_grace" else timedelta(0))
            )
        elif name in ("posted_qty_short", "posted_qty_over"):
            self._complete(r, rng, simple_first=True)
            m = next(m for m in r.moves if m.line is ln0)
            m.qty += -1 if name == "posted_qty_short" else 1
            self._place(r, max(r.times()), old)
        elif name in ("wrong_disposition", "wrong_warehouse"):
            self._complete(r, rng, simple_first=True)
            m = next(m for m in r.moves if m.line is ln0)
            if name == "wrong_disposition":
                m.disposition = rng.choice([d for d in ref.DISPOSITIONS if d != m.disposition])
            else:
                m.warehouse = rng.choice([w for w in range(3) if w != r.warehouse])
            self._place(r, max(r.times()), old)
        elif name == "wrong_disposition_recent":
            self._receive(r, rng, A, compact=True)
            end = self._post(r, rng)
            m = r.moves[0]
            m.disposition = rng.choice([d for d in ref.DISPOSITIONS if d != m.disposition])
            self._place(r, end, hours(rng.uniform(0.5, 1.5)))
        elif name in ("missing_credit_note", "draft_credit_note", "nm_failed_refund_transaction"):
            if name == "nm_failed_refund_transaction":
                self._complete(r, rng, credit=False, split=False, status="failure")
            else:
                self._complete(
                    r, rng, credit=name == "draft_credit_note", split=False, refund_last=True
                )
            for c in r.credits:
                c.state, c.paid_at = "draft", None
            self._place(r, max(r.times()), hours(rng.uniform(60, 700)))
        elif name in ("missing_credit_at_boundary", "nm_credit_grace"):
            self._complete(r, rng, credit=False, split=False, refund_last=True)
            self._place(
                r,
                r.refunds[0].at,
                hours(48) - (self.margin if name == "nm_credit_grace" else timedelta(0)),
            )
        elif name in ("credit_amount_off", "nm_amount_at_tolerance"):
            self._complete(r, rng, split=False)
            c = r.credits[0]
            if name == "nm_amount_at_tolerance":
                c.delta = rng.choice((CENT, -CENT))
            else:
                c.delta = rng.choice(
                    (
                        Decimal("0.02"),
                        Decimal("-0.02"),
                        Decimal("4.95"),
                        -(c.total / 10).quantize(CENT),
                    )
                )
            self._place(r, max(r.times()), hours(rng.uniform(2, 800)))
        elif name == "credit_currency_wrong":
            self._complete(r, rng)
            other = [c for c in ref.CURRENCIES if c != r.currency]
            cur = rng.choice(other)
            for c in r.credits:
                c.currency = cur
            self._place(r, max(r.times()), hours(rng.uniform(2, 800)))
        elif name in (
            "duplicate_credit_note_b2b",
            "duplicate_credit_note",
            "duplicate_refund",
            "nm_cancelled_credit_note",
        ):
            end = self._complete(r, rng, split=False)
            at = end + hours(rng.uniform(24, 200))
            if name == "duplicate_refund":
                r.refunds.append(Refund(at, [(ln0, ln0.qty)]))
            state = "cancelled" if name == "nm_cancelled_credit_note" else "posted"
            r.credits.append(
                CreditNote(at + hours(rng.uniform(0.5, 20)), [(ln0, ln0.qty)], state, r.currency)
            )
            self._place(r, max(r.times()), hours(rng.uniform(2, 600)))
        elif name == "credit_without_receipt":
            self._refund(r, rng, A + hours(rng.uniform(1, 12)), split=False)
            self._place(r, A, hours(rng.uniform(420, 650)))
        elif name == "nm_receipt_after_credit_grace":
            self._refund(r, rng, A + hours(rng.uniform(1, 12)), split=False)
            c = r.credits[0]
            # the first invoice date whose 00:00 + 336 h is more than an hour after as_of
            day = (self.as_of - hours(335)).date() + timedelta(days=1)
            target = midnight(day) + hours(1)
            c.paid_at = None
            r.shift(target - c.at)
        elif name in ("stale_return", "stale_return_at_boundary", "nm_stale_grace"):
            age = {
                "stale_return": hours(rng.uniform(800, 1500)),
                "stale_return_at_boundary": hours(720),
                "nm_stale_grace": hours(720) - self.margin,
            }[name]
            self._place(r, A, age)
        elif name == "unmapped_sku":
            self._complete(r, rng)
            self._place(r, max(r.times()), hours(rng.uniform(2, 800)))
        elif name == "nm_mistyped_rma":
            self._complete(r, rng)
            for ln in r.lines:
                for rc in ln.receipts:
                    rc.rma_scan = mistype(r.rma, rng)
            self._place(r, max(r.times()), hours(rng.uniform(2, 800)))
        elif name == "nm_tracking_only":
            self._complete(r, rng)
            for ln in r.lines:
                for rc in ln.receipts:
                    rc.rma_scan = None
            self._place(r, max(r.times()), hours(rng.uniform(2, 800)))
        elif name == "nm_keep_item":
            self._keep_item(r, rng)
            self._place(r, A, hours(rng.uniform(800, 1500)))
        elif name == "nm_cancelled_old":
            self.plan_clean(r, rng, "cancelled")
            self._place(r, r.approved_at, hours(rng.uniform(800, 1500)))
        elif name == "nm_split_refund":
            end = self._complete(r, rng, split=False)
            first = r.refunds[0]
            first.items = [(ln0, 1), *first.items[1:]]
            first.amounts = first.item_amounts()
            r.refunds.append(
                Refund(
                    end + hours(rng.uniform(2, 48)),
                    [(ln0, ln0.qty - 1)],
                    amounts=[ln0.total - first.amounts[0]],
                )
            )
            self._place(r, max(r.times()), hours(rng.uniform(2, 600)))
        else:  # pragma: no cover
            raise ValueError(name)
        assert max(r.times()) <= self.as_of, name

    # combos: bases whose timing is free (placed again 60-700 h before as_of, so every grace a
    # stock or money fault needs has passed); the other bases keep their exact timing
    REPLACEABLE = frozenset(
        {
            "nm_amount_at_tolerance",
            "nm_cancelled_credit_note",
            "nm_split_refund",
            "nm_failed_refund_transaction",
            "nm_mistyped_rma",
            "nm_tracking_only",
        }
    )
    STOCK_FAULTS = frozenset(
        {"posted_qty_over", "posted_qty_short", "wrong_disposition", "wrong_warehouse"}
    )

    def plan_combo(self, r: Return, rng: random.Random, combo: Scenario) -> None:
        """Several faults on one return (scenarios.COMBOS): the base, then each overlay."""
        faults = dict(combo.overlays)
        r.simple_lines = frozenset(j for f, j in combo.overlays if f in self.STOCK_FAULTS)
        if combo.base == "complete":
            no_credit = "missing_credit_note" in faults or "draft_credit_note" in faults
            end = self._complete(r, rng, split=False, refund_last=no_credit)
            for f, j in combo.overlays:
                ln = r.lines[j]
                if f in ("duplicate_credit_note", "duplicate_credit_note_b2b", "duplicate_refund"):
                    at = end + hours(rng.uniform(24, 200))
                    if f == "duplicate_refund":
                        r.refunds.append(Refund(at, [(ln, ln.qty)]))
                    note_at = at + hours(rng.uniform(0.5, 20))
                    r.credits.append(CreditNote(note_at, [(ln, ln.qty)], "posted", r.currency))
                elif f == "missing_credit_note":
                    r.credits = []
                elif f == "draft_credit_note":
                    for c in r.credits:
                        c.state, c.paid_at = "draft", None
            self._place(r, max(r.times()), hours(rng.uniform(60, 700)))
        else:
            self.plan_scenario(r, rng, combo.base)
            if combo.base in self.REPLACEABLE:
                self._place(r, max(r.times()), hours(rng.uniform(60, 700)))
        for f, j in combo.overlays:
            ln = r.lines[j]
            if f == "credit_currency_wrong":
                cur = rng.choice([c for c in ref.CURRENCIES if c != r.currency])
                for c in r.credits:
                    c.currency = cur
            elif f == "credit_amount_off":
                c = next(c for c in r.credits if c.state in ("posted", "paid"))
                c.delta = rng.choice(
                    (
                        Decimal("0.02"),
                        Decimal("-0.02"),
                        Decimal("4.95"),
                        -(c.total / 10).quantize(CENT),
                    )
                )
            elif f == "receipt_not_posted":
                r.moves = [m for m in r.moves if m.line is not ln]
            elif f in self.STOCK_FAULTS:
                (m,) = [m for m in r.moves if m.line is ln]  # one inspection: one move
                if f == "posted_qty_over":
                    m.qty += 1
                elif f == "posted_qty_short":
                    m.qty -= 1
                elif f == "wrong_disposition":
                    m.disposition = rng.choice([d for d in ref.DISPOSITIONS if d != m.disposition])
                else:
                    m.warehouse = rng.choice([w for w in range(3) if w != r.warehouse])
            elif f == "unmapped_sku":
                ln.channel_sku = f"{ln.channel_sku}-V{r.index}"
        assert max(r.times()) <= self.as_of, combo.name

    # -- ERP (Tryton tables) ---------------------------------------------------------------------
    def emit_erp(self, r: Return, rng: random.Random, out: list[Change]) -> None:
        cdc, as_of = self.cdc, self.as_of
        wh_id = ref.WAREHOUSES[r.warehouse][2]
        cur = ref.CURRENCIES[r.currency]
        order_ref = self.order_ref(r)
        sale_id = self.next_id("sale_sale")
        r._sale_number = f"SO{sale_id:07d}"  # type: ignore[attr-defined]
        sale = {
            "id": sale_id,
            "number": r._sale_number,
            "reference": order_ref,  # type: ignore
            "party": r.party,
            "currency": cur,
            "warehouse": wh_id,
            "sale_date": r.order_at.date(),
            "state": "processing",
            "origin": None,
            "create_date": r.order_at,
            "write_date": r.order_at,
            "company": 1,
        }
        snap = self.opt.snapshot and r.order_at < self.snapshot_at
        if snap:
            sale = {**sale, "state": "done"}
            out.append(cdc.change("erp", "sale_sale", "r", sale, self.snapshot_at, snapshot="true"))
        else:
            out.append(cdc.change("erp", "sale_sale", "c", sale, r.order_at))
            done_at = r.order_at + hours(rng.uniform(24, 72))
            if done_at <= as_of:
                out.append(
                    cdc.change(
                        "erp",
                        "sale_sale",
                        "u",
                        {**sale, "state": "done", "write_date": done_at},
                        done_at,
                        before=sale,
                    )
                )
        for ln in r.lines:
            row = {
                "id": ln.sale_line_id,
                "sale": sale_id,
                "product": ln.product.id,
                "quantity": float(ln.ordered),
                "unit_price": ln.product.price,
                "description": ln.product.name,
            }
            out.append(
                cdc.change(
                    "erp",
                    "sale_line",
                    "r" if snap else "c",
                    row,
                    self.snapshot_at if snap else r.order_at,
                    snapshot="true" if snap else "false",
                )
            )
        if not r.erp_return:
            return
        ret_id = self.next_id("sale_sale")
        at = r.erp_at
        ret = {
            "id": ret_id,
            "number": f"SO{ret_id:07d}",
            "reference": r.rma,
            "party": r.party,
            "currency": cur,
            "warehouse": wh_id,
            "sale_date": at.date(),
            "state": "draft",
            "origin": f"sale.sale,{sale_id}",
            "create_date": at,
            "write_date": at,
            "company": 1,
        }
        out.append(cdc.change("erp", "sale_sale", "c", ret, at))
        conf_at = at + hours(rng.uniform(0.01, 0.2))
        final = "cancelled" if r.state == "cancelled" else "processing"
        if conf_at <= as_of:
            out.append(
                cdc.change(
                    "erp",
                    "sale_sale",
                    "u",
                    {**ret, "state": final, "write_date": conf_at},
                    conf_at,
                    before=ret,
                )
            )
        for ln in r.lines:
            out.append(
                cdc.change(
                    "erp",
                    "sale_line",
                    "c",
                    {
                        "id": ln.ret_line_id,
                        "sale": ret_id,
                        "product": ln.product.id,
                        "quantity": float(-ln.qty),
                        "unit_price": ln.product.price,
                        "description": f"Return: {ln.product.name}",
                    },
                    at,
                )
            )
        if r.state == "cancelled":
            return
        ship_id = self.next_id("shipment")
        ship_at = at + hours(0.25)
        ship = {
            "id": ship_id,
            "number": f"RS{ship_id:07d}",
            "reference": r.rma,
            "warehouse": wh_id,
            "state": "draft",
            "effective_date": None,
        }
        out.append(cdc.change("erp", "stock_shipment_out_return", "c", ship, ship_at))
        receipts = [rc.at for ln in r.lines for rc in ln.receipts]
        if receipts:
            t = min(receipts) + hours(rng.uniform(0.1, 0.9))
            if t <= as_of:
                out.append(
                    cdc.change(
                        "erp",
                        "stock_shipment_out_return",
                        "u",
                        {**ship, "state": "received", "effective_date": t.date()},
                        t,
                        before=ship,
                    )
                )
        for m in r.moves:
            loc = ref.location_id(m.warehouse, m.disposition)
            move = {
                "id": self.next_id("stock_move"),
                "product": m.line.product.id,
                "quantity": float(m.qty),
                "from_location": ref.CUSTOMER_LOCATION_ID,
                "to_location": loc,
                "shipment": f"stock.shipment.out.return,{ship_id}",
                "origin": f"sale.line,{m.line.ret_line_id}",
                "state": "done",
                "effective_date": m.at.date(),
                "create_date": m.at,
                "write_date": m.at,
            }
            if rng.random() < 0.3:
                t0 = m.at - hours(rng.uniform(0.05, 0.5))
                draft = {
                    **move,
                    "state": "assigned",
                    "effective_date": None,
                    "create_date": t0,
                    "write_date": t0,
                }
                out.append(cdc.change("erp", "stock_move", "c", draft, t0))
                out.append(
                    cdc.change(
                        "erp", "stock_move", "u", {**move, "create_date": t0}, m.at, before=draft
                    )
                )
            else:
                out.append(cdc.change("erp", "stock_move", "c", move, m.at))
        if r.moves and rng.random() < self.opt.rate("delete_rate"):
            self.noise_counts["cdc_deleted_drafts"] += 1
            m = r.moves[0]
            t0 = m.at - hours(2)
            draft = {
                "id": self.next_id("stock_move"),
                "product": m.line.product.id,
                "quantity": float(m.qty),
                "from_location": ref.CUSTOMER_LOCATION_ID,
                "to_location": ref.location_id(m.warehouse, "RESTOCK"),
                "shipment": f"stock.shipment.out.return,{ship_id}",
                "origin": f"sale.line,{m.line.ret_line_id}",
                "state": "draft",
                "effective_date": None,
                "create_date": t0,
                "write_date": t0,
            }
            out.append(cdc.change("erp", "stock_move", "c", draft, t0))
            dele = cdc.change("erp", "stock_move", "d", None, t0 + hours(0.5), before=draft)
            dele.tombstone = True  # type: ignore[attr-defined]
            out.append(dele)
        for c in r.credits:
            self.emit_credit(r, rng, c, out)

    def emit_credit(self, r: Return, rng: random.Random, c: CreditNote, out: list[Change]) -> None:
        cdc = self.cdc
        inv_id = self.next_id("account_invoice")
        total = -c.total.quantize(CENT)
        inv = {
            "id": inv_id,
            "number": None,
            "type": "out",
            "party": r.party,
            "currency": ref.CURRENCIES[c.currency or r.currency],
            "invoice_date": c.at.date(),
            "state": "draft",
            "reference": r.rma,
            "description": f"Credit note for return {r.rma}",
            "total_amount_cache": total,
            "create_date": c.at - hours(0.2),
            "write_date": c.at - hours(0.2),
            "company": 1,
        }
        out.append(cdc.change("erp", "account_invoice", "c", inv, c.at - hours(0.2)))
        for ln, q in c.items:
            out.append(
                cdc.change(
                    "erp",
                    "account_invoice_line",
                    "c",
                    {
                        "id": self.next_id("account_invoice_line"),
                        "invoice": inv_id,
                        "product": ln.product.id,
                        "quantity": float(-q),
                        "unit_price": ln.product.price,
                        "origin": f"sale.line,{ln.ret_line_id}",
                    },
                    c.at - hours(0.2),
                )
            )
        if c.state == "draft":
            return
        if c.state == "cancelled":
            out.append(
                cdc.change(
                    "erp",
                    "account_invoice",
                    "u",
                    {**inv, "state": "cancelled", "write_date": c.at},
                    c.at,
                    before=inv,
                )
            )
            return
        posted = {**inv, "state": "posted", "number": f"CN{inv_id:07d}", "write_date": c.at}
        out.append(cdc.change("erp", "account_invoice", "u", posted, c.at, before=inv))
        if c.paid_at is not None and c.paid_at <= self.as_of:
            out.append(
                cdc.change(
                    "erp",
                    "account_invoice",
                    "u",
                    {**posted, "state": "paid", "write_date": c.paid_at},
                    c.paid_at,
                    before=posted,
                )
            )

    # -- WMS -------------------------------------------------------------------------------------
    def emit_wms(self, r: Return, rng: random.Random, out: list[Change]) -> None:
        dc = ref.WAREHOUSES[r.warehouse][0]
        for ln in r.lines:
            for rc in ln.receipts:
                scan = rc.rma_scan
                if scan == r.rma:  # noise that changes no answer: typos, missing labels
                    u = rng.random()
                    if u < self.opt.rate("mistyped_rma_rate"):
                        scan = mistype(r.rma, rng)
                        self.noise_counts["wms_mistyped_rma"] += 1
                    elif r.channel != "b2b" and u < self.opt.rate(
                        "mistyped_rma_rate"
                    ) + self.opt.rate("tracking_only_rate"):
                        scan = None
                        self.noise_counts["wms_tracking_only"] += 1
                tracking = rc.tracking if r.channel != "b2b" else None
                self.emit_receipt(out, dc, scan, tracking, ln.product, rc, rng)

    def emit_receipt(
        self,
        out: list[Change],
        dc: str,
        scan: str | None,
        tracking: str | None,
        product: ref.Product,
        rc: Receipt,
        rng: random.Random,
    ) -> None:
        rid = self.next_id("receipt")
        lot = f"L{rc.at:%y%m}-{product.index:03d}" if product.index % 3 == 0 else None
        serial = f"SN{rid:09d}" if product.index % 5 == 0 and rc.qty == 1 else None
        out.append(
            self.cdc.change(
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
                self.cdc.change(
                    "wms",
                    "inspections",
                    "c",
                    {
                        "inspection_id": self.next_id("inspection"),
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

    def extra_receipt(self, i: int, rng: random.Random, scen: Scenario, out: list[Change]) -> None:
        wh = rng.randrange(3)
        age = {
            "unmatched_receipt": hours(rng.uniform(30, 400)),
            "unmatched_receipt_no_rma": hours(rng.uniform(30, 400)),
            "unmatched_receipt_at_boundary": hours(24),
            "nm_unmatched_grace": hours(24) - self.margin,
        }[scen.name]
        rc = Receipt(rng.choice((1, 1, 2)), self.as_of - age)
        product = rng.choice(self.products)
        foreign = f"RT-{i:07d}"
        scan: str | None = rng.choice(
            (foreign, foreign.lower(), f" {foreign} ", f" {foreign.lower()}")
        )
        expected = []
        if scen.name == "unmatched_receipt_no_rma":
            free = [p for p in self.products if p.index not in self.no_rma_skus]
            if free:
                product = rng.choice(free)
                self.no_rma_skus.add(product.index)
                scan = None
            else:  # every sku already has a no-RMA fault: keep the key unique
                scan = foreign
        tracking = f"1ZX{rng.randrange(16**6):06X}{i:010d}"
        if scen.rules:
            key_rma = (scan or "").strip().upper()
            expected = [("unmatched_receipt", key_rma, product.code)]
        self.record_scenario(scen, "wms", (scan or "").strip().upper(), expected)
        self.emit_receipt(out, ref.WAREHOUSES[wh][0], scan, tracking, product, rc, rng)

    # -- channels --------------------------------------------------------------------------------
    def order_ref(self, r: Return) -> str:
        return {
            "shopify": f"#{1001 + r.index}",
            "amazon": f"1{r.index % 9 + 11}-{r.index:07d}-{(r.index * 7919) % 10**7:07d}",
            "b2b": f"PO-{r.party:05d}-{r.index:07d}",
        }[r.channel]

    def emit_channel(self, r: Return, rng: random.Random, bad: list[tuple[str, str]]) -> None:
        """Channel files; corrupted copies this return cannot carry wait for a later return."""
        feeds = {"shopify": ("returns_saas", "shopify"), "amazon": ("amazon",), "b2b": ("b2b",)}
        mine = [
            (s, k)
            for s, k in bad
            if s in feeds[r.channel] and not (s == "shopify" and not r.refunds)
        ]
        self.pending_bad += [(s, k) for s, k in bad if (s, k) not in mine]
        by_source = {s: [k for s2, k in mine if s2 == s] for s in FILE_MALFORMED}
        if r.channel == "shopify":
            self.emit_saas(r, rng, by_source["returns_saas"])
            self.emit_shopify(r, rng, by_source["shopify"])
        elif r.channel == "amazon":
            self.emit_amazon(r, rng, by_source["amazon"])
        else:
            self.emit_b2b(r, rng, by_source["b2b"])

    def _week(self, t: datetime) -> str:
        monday = t.date() - timedelta(days=t.weekday())
        return monday.isoformat()

    def saas_payload(self, r: Return, at: datetime, state: str, closed: bool) -> dict:
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
            "order_name": self.order_ref(r),
            "currency": r.currency,
            "outcome": r.outcome,
            "total_refund": money(refund_total),
            "tracking_number": r.tracking,
            "line_items": items,
            "customer": {"first_name": first, "last_name": last, "email": ref.party_email(r.party)},
        }

    def emit_saas(self, r: Return, rng: random.Random, bad: list[str]) -> None:
        for ln in r.lines:
            ln.saas_line_item_id = self.next_id("saas_line")
            ln.shop_line_item_id = 13_000_000_000 + ln.sale_line_id
        events = [
            ("return.created", r.approved_at, "review" if r.state == "review" else "open", False)
        ]
        receipts = [rc.at for ln in r.lines for rc in ln.receipts]
        if receipts and min(receipts) < (r.state_at or self.as_of):
            events.append(("return.updated", min(receipts), "open", False))
        if r.state == "closed":
            events.append(("return.closed", r.state_at, "closed", True))
        elif r.state == "cancelled":
            events.append(("return.cancelled", r.state_at, "cancelled", False))
        deliveries = []
        for topic, at, state, closed in events:
            delivered = at + timedelta(seconds=rng.randint(1, 120))
            if rng.random() < self.opt.rate("out_of_order_rate"):
                delivered += hours(rng.uniform(1, 48))  # a late delivery
                self.noise_counts["saas_late_delivery"] += 1
            delivered = min(delivered, self.as_of)
            deliveries.append(
                {
                    "webhook_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "topic": topic,
                    "delivered_at": iso_z(delivered),
                    "payload": self.saas_payload(r, at, state, closed),
                }
            )
        if len(deliveries) > 1 and rng.random() < self.opt.rate("out_of_order_rate"):
            deliveries.reverse()
            self.noise_counts["saas_out_of_order"] += 1
        if rng.random() < self.opt.rate("duplicate_rate"):
            dup = dict(rng.choice(deliveries))
            dup["delivered_at"] = iso_z(
                min(
                    self.as_of,
                    datetime.fromisoformat(dup["delivered_at"]) + hours(rng.uniform(0.1, 6)),
                )
            )
            deliveries.append(dup)
            self.noise_counts["saas_duplicate_delivery"] += 1
        for d in deliveries:
            rel = self.saas_file(d)
            self.write_json_line("returns_saas", rel, d)
        for kind in bad:
            d = deliveries[0]
            rel = self.saas_file(d)
            if kind == "not_json":
                text = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
                w = self.file(rel)
                w.write_line(text[: len(text) // 2])
                self.file_records["returns_saas"] += 1
                row = w.lines
            elif kind == "missing_key":
                row = self.write_json_line(
                    "returns_saas", rel, {k: v for k, v in d.items() if k != "webhook_id"}
                )
            else:
                row = self.write_json_line(
                    "returns_saas",
                    rel,
                    {**d, "payload": {**d["payload"], "id": f"ret_{d['payload']['id']}"}},
                )
            self.dead.append(("returns_saas", (self.file(rel), row)))

    def saas_file(self, delivery: dict) -> str:
        return f"returns_saas/webhooks_{self._week(ts(delivery['delivered_at']))}.ndjson"

    def emit_shopify(self, r: Return, rng: random.Random, bad: list[str]) -> None:
        off = ref.LOCAL_OFFSETS[r.currency]
        objs = []
        for rf in r.refunds:
            rid = self.next_id("shopify_refund")
            items = []
            for (ln, q), amount in zip(rf.items, rf.item_amounts(), strict=True):
                sub = ln.product.price * q
                tax = amount - sub
                items.append(
                    {
                        "id": 800_000_000 + self.next_id("shopify_refund_line"),
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
                    "id": 170_000_000 + self.next_id("shopify_tx"),
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
                    self.noise_counts["shopify_failed_then_success"] += 1
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
            self.write_json_line("shopify", self.shopify_file(obj), obj)
            if rng.random() < self.opt.rate("duplicate_rate"):
                self.write_json_line("shopify", self.shopify_file(obj), obj)
                self.noise_counts["shopify_duplicate_refund"] += 1
        for kind in bad:
            obj = objs[0]
            rel = self.shopify_file(obj)
            if kind == "not_json":
                text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
                w = self.file(rel)
                w.write_line(text[: len(text) // 3])
                self.file_records["shopify"] += 1
                row = w.lines
            elif kind == "missing_key":
                row = self.write_json_line(
                    "shopify", rel, {k: v for k, v in obj.items() if k != "order_id"}
                )
            else:
                row = self.write_json_line("shopify", rel, {**obj, "id": f"R{obj['id']}"})
            self.dead.append(("shopify", (self.file(rel), row)))

    def shopify_file(self, obj: dict) -> str:
        return f"shopify/refunds_{self._week(datetime.fromisoformat(obj['created_at']))}.ndjson"

    def report_for(self, t: datetime) -> date:
        last = self.as_of.date()
        k = (last - t.date()).days // 7
        return last - timedelta(days=7 * k)

    def emit_amazon(self, r: Return, rng: random.Random, bad: list[str]) -> None:
        final_at = max(r.times())
        rows: list[tuple[date, list[str]]] = []
        first_report = self.report_for(r.approved_at)
        final_report = self.report_for(final_at)
        closed = r.state == "closed"
        refunded = r.amazon_refund_at is not None
        status = "Closed" if closed and refunded else "Approved"
        for ln in r.lines:
            if final_report != first_report:
                rows.append((first_report, self.amazon_row(r, ln, "Approved", None, None)))
            final = self.amazon_row(
                r, ln, status, ln.total if refunded else None, r.amazon_delivery
            )
            rows.append((final_report, final))
            nxt = final_report + timedelta(days=7)
            if nxt <= self.as_of.date() and rng.random() < self.opt.rate("amazon_overlap_rate"):
                rows.append((nxt, final))
                self.noise_counts["amazon_overlap_row"] += 1
        header = list(AMAZON_COLUMNS)
        for d, row in rows:
            self.file(f"amazon/returns_{d.isoformat()}.tsv", header, "\t").write_row(row)
            self.file_records["amazon"] += 1
        for _kind in bad:
            d, row = rows[-1]
            w = self.file(f"amazon/returns_{d.isoformat()}.tsv", header, "\t")
            broken = list(row)
            broken[header.index("Return quantity")] = "two"
            n = w.write_row(broken)
            self.file_records["amazon"] += 1
            self.dead.append(("amazon", (w, n)))

    def amazon_row(
        self, r: Return, ln: Line, status: str, refunded: Decimal | None, delivery: datetime | None
    ) -> list[str]:
        off = -420 if r.currency == "USD" else ref.LOCAL_OFFSETS[r.currency]
        values = {
            "Order ID": self.order_ref(r),
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

    def emit_b2b(self, r: Return, rng: random.Random, bad: list[str]) -> None:
        req_at = r.requested_at or r.approved_at
        rel = f"b2b/credit_requests_{self._week(req_at)}.csv"
        w = self.file(rel, B2B_HEADER)
        rows = []
        for ln in r.lines:
            rows.append(
                [
                    r.rma,
                    f"ACC-{r.party:06d}",
                    self.order_ref(r),
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
            self.file_records["b2b"] += 1
            if rng.random() < self.opt.rate("duplicate_rate"):
                w.write_row(row)
                self.file_records["b2b"] += 1
                self.noise_counts["b2b_duplicate_row"] += 1
            if len(self._b2b_sample) < 3:
                self._b2b_sample.append(row)
        for _kind in bad:
            broken = list(rows[0])
            broken[B2B_HEADER.index("quantity")] = "one and a half"
            n = w.write_row(broken)
            self.file_records["b2b"] += 1
            self.dead.append(("b2b", (w, n)))

    # -- CDC delivery noise ----------------------------------------------------------------------
    def write_changes(
        self, i: int, rng: random.Random, changes: list[Change], malformed: list[str]
    ) -> None:
        out = list(changes)
        # a newer change of a row delivered before its older one (lsn still orders them)
        for j in range(1, len(out)):
            if out[j].op == "u" and rng.random() < self.opt.rate("reorder_rate"):
                k = max(
                    x for x in range(j) if out[x].key == out[j].key and out[x].table is out[j].table
                )
                out[k], out[j] = out[j], out[k]
                self.noise_counts["cdc_reordered"] += 1
        tail = []
        for ch in out:
            if rng.random() < self.opt.rate("duplicate_rate"):
                tail.append(ch)
                self.noise_counts["cdc_duplicates"] += 1
        for ch in out + tail:
            if getattr(ch, "tombstone", False):
                self.cdc.write(ch)
                self.cdc.write_tombstone(ch)
            elif rng.random() < self.opt.rate("late_rate"):
                self.late.append((i + rng.randint(1, 40), ch))
                self.noise_counts["cdc_late"] += 1
            else:
                self.cdc.write(ch)
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
            self.cdc.write_malformed(rng.choice(victims), kind)

    def _release_late(self, i: int | None) -> None:
        if not self.late:
            return
        keep = []
        for due, ch in self.late:
            if i is None or due <= i:
                self.cdc.write(ch)
            else:
                keep.append((due, ch))
        self.late = keep

    # -- closing ---------------------------------------------------------------------------------
    def finish(self) -> dict:
        if self.opt.noise and self.opt.quarantine_file and self._b2b_sample:
            header = ["request_no", *B2B_HEADER[1:]]
            w = self.file(QUARANTINE_PATH, header)
            for row in self._b2b_sample:
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
                if k not in _NEW_OPTIONS or v != _NEW_OPTIONS[k]  # a seed's old output stays
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


_NEW_OPTIONS = {"multi_fault_rate": 0.0, "near_miss_margin_s": 3600}


def mistype(rma: str, rng: random.Random) -> str:
    """An RMA as a hurried scan prints it: case, dash and spaces vary (letters/digits intact)."""
    variant = rng.randrange(4)
    if variant == 0:
        return rma.lower()
    if variant == 1:
        return rma.replace("-", "")
    if variant == 2:
        return " " + rma.replace("-", " ") + " "
    return rma.lower().replace("-", "")


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
