"""The simulator's options: every fault and noise family, each configurable (docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass


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
    # A stalled warehouse (its ERP code, e.g. "WH-E"): every inspection there comes `stall_h`
    # hours later than it would, and its received-but-uninspected returns have waited that much
    # longer (stage latencies, DESIGN §14; the truth is in expected_stages.csv).
    stalled_warehouse: str | None = None
    stall_h: float = 0.0

    def rate(self, name: str) -> float:
        return getattr(self, name) if self.noise else 0.0

    @property
    def near_misses(self) -> float:
        return self.fault_rate / 2 if self.near_miss_rate is None else self.near_miss_rate


# options added after the first release, left out of landscape.json at their default so that a
# seed's old output stays byte-identical
NEW_OPTIONS = {
    "multi_fault_rate": 0.0,
    "near_miss_margin_s": 3600,
    "stalled_warehouse": None,
    "stall_h": 0.0,
}
