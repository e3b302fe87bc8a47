"""Operations: how long each stage of a return takes, and where returns stall (DESIGN §14).

`operations/stage_latencies` reads `marts.return_stage_latencies` after every build:
- p50/p90/p99 hours per stage transition, overall, per channel and per warehouse, over the
  transitions that ended in the last 7 and the last 30 days before the run's as_of; each is a
  numeric metadata entry, so the asset's Plots tab draws it run over run, and the whole set is
  an inline table;
- `bottleneck`: the transition furthest over its SLA now (its 7-day p90, or the age of its oldest
  overdue open transition, as a share of the SLA);
- one check per transition: it fails when the 7-day p90 exceeds the SLA (settings seed,
  sla_<transition>_h) or when any open transition is older than the SLA, so a warehouse that has
  stopped inspecting or posting shows red even though nothing finishes late yet.
Percentiles are DuckDB's quantile_cont (pipelines/lib/trace.py). No personal data: RMA numbers,
channels, warehouses and hours only.
"""

import dagster as dg

from pipelines.lib.trace import QUANTILES, TRANSITION_LABELS, TRANSITIONS
from pipelines.resources import SettingsResource

LATENCIES_KEY = dg.AssetKey(["marts", "return_stage_latencies"])
OPERATIONS_KEY = dg.AssetKey(["operations", "stage_latencies"])
OVERDUE_ROWS = 10  # worst overdue rows shown per check

_CHECK_TEXT = {
    "requested_to_received": "Customers' parcels reach a warehouse",
    "received_to_inspected": "Received parcels are inspected",
    "inspected_to_posted": "Inspected units are posted to ERP stock",
    "refunded_to_credited": "Channel refunds get their ERP credit note",
}


def _check_name(transition: str) -> str:
    return f"{transition}_within_sla"


def _metric_key(transition: str, dimension: str, value: str, quantile: str, window: str) -> str:
    scope = "all" if dimension == "all" else f"{dimension}={value}"
    return f"{transition} {scope} {quantile}_{window}_h"


def _percentile_table(rows: list[dict], slas: dict[str, float]) -> dg.MetadataValue:
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("transition", "string"),
            dg.TableColumn("scope", "string", description="all, a channel or a warehouse"),
            dg.TableColumn("window", "string", description="7d or 30d before as_of"),
            dg.TableColumn("n", "int", description="transitions that ended in the window"),
            *(dg.TableColumn(f"{q}_h", "float") for q, _ in QUANTILES),
            dg.TableColumn("sla_h", "float"),
        ]
    )
    records = []
    for r in rows:
        scope = "all" if r["dimension"] == "all" else f"{r['dimension']} {r['value']}"
        records.append(
            dg.TableRecord(
                {
                    "transition": TRANSITION_LABELS[r["transition"]],
                    "scope": scope,
                    "window": r["window"],
                    "n": int(r["n"]),
                    **{f"{q}_h": round(float(r[q]), 2) for q, _ in QUANTILES},
                    "sla_h": float(slas.get(r["transition"]) or 0.0),
                }
            )
        )
    return dg.MetadataValue.table(records, schema=schema)


@dg.asset(
    key=OPERATIONS_KEY,
    deps=[LATENCIES_KEY],
    group_name="operations",
    description=(
        "How long returns wait at each stage: request to warehouse receipt, receipt to "
        "inspection, inspection to ERP stock posting, channel refund to ERP credit note. "
        "Median, 90th and 99th percentile hours per channel and per warehouse for the last 7 and "
        "30 days (plotted run over run), the current bottleneck, and one check per stage against "
        "its SLA (settings seed) that also fails when returns sit open past the SLA."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            name=_check_name(t),
            asset=OPERATIONS_KEY,
            description=(
                f"{_CHECK_TEXT[t]} within the SLA ({TRANSITION_LABELS[t]}): fails when the "
                "7-day p90 is over the SLA or an open one is older than the SLA."
            ),
        )
        for t in TRANSITIONS
    ],
)
def stage_latencies(context: dg.AssetExecutionContext, settings: SettingsResource):
    from pipelines.lib.trace import bottleneck, overdue, percentiles, transition_health
    from pipelines.lib.warehouse import connection

    resolved = settings.get()
    with connection(resolved.db_path, read_only=True) as con:
        con.execute("set timezone = 'UTC'")
        rows = percentiles(con)
        health = transition_health(con)
        late = overdue(con)
    slas = {h["transition"]: h["sla_h"] for h in health}
    worst, share = bottleneck(health)
    metadata: dict = {
        "as_of": late["as_of"],
        "bottleneck": TRANSITION_LABELS[worst] if worst else "none",
        "bottleneck_transition": worst or "none",
        "bottleneck_share_of_sla": float(round(share, 4)),
        "overdue_open": len(late["overdue"]),
    }
    # plots in reading order: overall first (stages in their order, 7 days before 30), then per
    # channel, then per warehouse
    dims = {"all": 0, "channel": 1, "warehouse": 2}
    rows = sorted(
        rows,
        key=lambda r: (
            dims[r["dimension"]],
            r["value"],
            TRANSITIONS.index(r["transition"]),
            r["window"] != "7d",
        ),
    )
    for r in rows:
        if not r["n"]:
            continue
        for q, _ in QUANTILES:
            key = _metric_key(r["transition"], r["dimension"], r["value"], q, r["window"])
            metadata[key] = float(round(r[q], 4))
        if r["dimension"] == "all":
            metadata[f"{r['transition']} all n_{r['window']}"] = int(r["n"])
    metadata["percentiles"] = _percentile_table([r for r in rows if r["n"]], slas)
    context.log.info(
        f"bottleneck {metadata['bottleneck']} ({share:.0%} of its SLA); "
        f"{len(late['overdue'])} open transition(s) past their SLA"
    )
    yield dg.MaterializeResult(metadata=metadata)
    for h in health:
        t = h["transition"]
        sla, p90 = h["sla_h"], h["p90_7d_h"]
        slow = p90 is not None and sla is not None and p90 > sla
        stalled = bool(h["overdue"])
        mine = [o for o in late["overdue"] if o["transition"] == t][:OVERDUE_ROWS]
        reasons = []
        if slow:
            reasons.append(f"7-day p90 {p90:.1f} h over the {sla:g} h SLA")
        if stalled:
            reasons.append(
                f"{h['overdue']} open past the SLA (oldest {h['oldest_overdue_h']:.1f} h; "
                f"warehouses {', '.join(h['overdue_warehouses'] or [])})"
            )
        yield dg.AssetCheckResult(
            check_name=_check_name(t),
            asset_key=OPERATIONS_KEY,
            passed=not (slow or stalled),
            severity=dg.AssetCheckSeverity.ERROR if stalled else dg.AssetCheckSeverity.WARN,
            description="; ".join(reasons)
            or (f"within the {sla:g} h SLA" if sla is not None else "no return reached this stage"),
            metadata={
                "sla_h": float(sla or 0.0),
                **({"p90_7d_h": float(p90)} if p90 is not None else {}),
                "ended_7d": int(h["n_7d"]),
                "open": int(h["open"]),
                "overdue_open": int(h["overdue"]),
                "oldest_overdue_h": float(h["oldest_overdue_h"] or 0.0),
                "overdue_warehouses": ", ".join(h["overdue_warehouses"] or []) or "none",
                "most_overdue": dg.MetadataValue.table(
                    [
                        dg.TableRecord(
                            {
                                "rma": o["rma_number"],
                                "channel": o["channel"],
                                "warehouse": o["warehouse"],
                                "since": o["since"],
                                "overdue_h": float(o["overdue_h"]),
                            }
                        )
                        for o in mine
                    ],
                    schema=dg.TableSchema(
                        columns=[
                            dg.TableColumn("rma", "string"),
                            dg.TableColumn("channel", "string"),
                            dg.TableColumn("warehouse", "string"),
                            dg.TableColumn("since", "string"),
                            dg.TableColumn("overdue_h", "float"),
                        ]
                    ),
                ),
            },
        )


defs = dg.Definitions(assets=[stage_latencies])
