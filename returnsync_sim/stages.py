"""Answer key of the stage latencies (DESIGN §14), written from the plan of every return.

Two files:
- `expected_stages.csv`: one row per return and stage transition, with the start and end times
  the systems record for what was planned (empty end: open), the channel and the warehouse.
- `expected_stage_events.csv`: one row per record of a stage (the request, each WMS receipt and
  inspection, each done ERP stock move, each successful channel refund document, each posted ERP
  credit note), with its time and system: what `returnsync trace` must show for the return.

The definitions (the product's, DESIGN §4, §5, §14), as they apply to a planned return:
- requested: the channel's request time (B2B `requested_at`; returns SaaS `created_at` and Amazon
  `Return request date`, which the simulator sets to `approved_at`).
- received / inspected: every `Receipt.at` / `Inspection.at`; the stage time is the first.
- posted: every `Move.at` (the stock move is written done at that time); the first.
- refunded (channel refund): Shopify refund objects with a successful transaction, at `Refund.at`
  (`processed_at`); Amazon: the `Return delivery date` when the report has one, else 00:00 UTC of
  the first report that shows the refunded amount; B2B has none.
- credited: ERP credit notes posted (state posted or paid), at their invoice date 00:00 UTC (the
  ERP dates them by day): a credit dated the refund's own day counts as 0 h.
- requested -> received is expected (open while no receipt) unless the channel closed, cancelled
  or rejected the return or the customer keeps the item; the other transitions are open while
  their end is missing.
- warehouse: the planned warehouse's ERP code when received or when an ERP return order exists;
  `unknown` otherwise.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

from . import reference as ref

STAGES_FILE = "expected_stages.csv"
EVENTS_FILE = "expected_stage_events.csv"
TRANSITIONS = (
    ("requested_to_received", "requested", "received"),
    ("received_to_inspected", "received", "inspected"),
    ("inspected_to_posted", "inspected", "posted"),
    ("refunded_to_credited", "refunded", "credited"),
)
STAGE_COLUMNS = [
    "rma_number",
    "channel",
    "warehouse",
    "transition",
    "started_at",
    "ended_at",
    "latency_h",
]
EVENT_COLUMNS = ["rma_number", "order_ref", "tracking_number", "stage", "at", "system"]


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _midnight(t: datetime) -> datetime:
    d = t.astimezone(UTC).date()
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _report_for(as_of: datetime, t: datetime):
    """The weekly Amazon report that shows a row last changed at `t` (the Amazon emitter's rule:
    reports are dated as_of's day minus whole weeks)."""
    last = as_of.date()
    return last - timedelta(days=7 * ((last - t.date()).days // 7))


def _order_ref(r) -> str:
    """The original order as the channel names it (the channel emitters' rule)."""
    return {
        "shopify": f"#{1001 + r.index}",
        "amazon": f"1{r.index % 9 + 11}-{r.index:07d}-{(r.index * 7919) % 10**7:07d}",
        "b2b": f"PO-{r.party:05d}-{r.index:07d}",
    }[r.channel]


def stage_events(sim, r) -> list[tuple[str, datetime, str]]:
    """(stage, time, system) of every record of a stage of the planned return `r`."""
    events: list[tuple[str, datetime, str]] = []
    system = {"shopify": "returns_saas", "amazon": "amazon", "b2b": "b2b"}[r.channel]
    requested = r.requested_at if r.channel == "b2b" and r.requested_at else r.approved_at
    events.append(("requested", requested, system))
    for ln in r.lines:
        for rc in ln.receipts:
            events.append(("received", rc.at, "wms"))
            events += [("inspected", ins.at, "wms") for ins in rc.inspections]
    erp = r.erp_return and r.state != "cancelled"  # a cancelled ERP return order has no more
    if erp:
        events += [("posted", m.at, "erp") for m in r.moves]
    if r.channel == "shopify":
        for rf in r.refunds:
            if rf.status == "success" and rf.amount > 0:
                events.append(("refunded", rf.at, "shopify"))
    elif r.channel == "amazon" and r.amazon_refund_at is not None:
        at = r.amazon_delivery
        if at is None:  # the first report that shows the refunded amount, at 00:00 UTC
            report = _report_for(sim.as_of, max(r.times()))
            at = datetime(report.year, report.month, report.day, tzinfo=UTC)
        events.append(("refunded", at, "amazon"))
    if erp:
        for c in r.credits:
            if c.state in ("posted", "paid"):
                events.append(("credited", _midnight(c.at), "erp"))
    return sorted(events, key=lambda e: (e[1], e[0]))


def _terminal(r) -> bool:
    """The channel closed, cancelled or rejected the return (no receipt is expected then)."""
    if r.channel == "shopify":
        return r.state in ("closed", "cancelled")
    if r.channel == "amazon":
        return r.state == "closed" and r.amazon_refund_at is not None
    return r.b2b_status == "rejected"


def transitions(sim, r) -> list[dict]:
    """The stage transitions of the planned return `r` (see the module docstring)."""
    first: dict[str, datetime] = {}
    for stage, at, _ in stage_events(sim, r):
        if stage not in first or at < first[stage]:
            first[stage] = at
    received = "received" in first
    code = ref.WAREHOUSES[r.warehouse][1]
    warehouse = code if (received or r.erp_return) else "unknown"
    rows = []
    for name, start, end in TRANSITIONS:
        if start not in first:
            continue
        if (
            name == "requested_to_received"
            and not received
            and (_terminal(r) or r.outcome == "keep_item")
        ):
            continue
        started, ended = first[start], first.get(end)
        latency = None
        if ended is not None:
            latency = (ended - started) / timedelta(hours=1)
            if name == "refunded_to_credited":
                latency = max(latency, 0.0)
        rows.append(
            {
                "rma_number": r.rma,
                "channel": r.channel,
                "warehouse": warehouse,
                "transition": name,
                "started_at": _iso(started),
                "ended_at": _iso(ended),
                "latency_h": "" if latency is None else repr(latency),
            }
        )
    return rows


class StageLatencies:
    """Observer: the stage transitions and stage events of every return (module docstring)."""

    name = "stage_latencies"
    files = (STAGES_FILE, EVENTS_FILE)

    def __init__(self) -> None:
        self._stages = None
        self._events = None
        self._counts: dict[str, int] = {}
        self._open: dict[str, int] = {}

    def _open_files(self, out) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self._stages_f = open(out / STAGES_FILE, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._events_f = open(out / EVENTS_FILE, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._stages = csv.DictWriter(self._stages_f, STAGE_COLUMNS, lineterminator="\n")
        self._events = csv.writer(self._events_f, lineterminator="\n")
        self._stages.writeheader()
        self._events.writerow(EVENT_COLUMNS)

    def on_return(self, sim, r, scenario, expected) -> None:
        if self._stages is None:
            self._open_files(sim.out)
        for row in transitions(sim, r):
            self._stages.writerow(row)
            self._counts[row["transition"]] = self._counts.get(row["transition"], 0) + 1
            if not row["ended_at"]:
                self._open[row["transition"]] = self._open.get(row["transition"], 0) + 1
        order_ref = _order_ref(r)
        tracking = r.tracking if r.channel != "b2b" else ""
        for stage, at, system in stage_events(sim, r):
            self._events.writerow([r.rma, order_ref, tracking, stage, _iso(at), system])

    def finish(self, sim, out) -> dict | None:
        if self._stages is None:  # no return at all: still write the (empty) files
            self._open_files(out)
        self._stages_f.close()
        self._events_f.close()
        return {
            "files": [STAGES_FILE, EVENTS_FILE],
            "transitions": dict(sorted(self._counts.items())),
            "open": dict(sorted(self._open.items())),
        }
