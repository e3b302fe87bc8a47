"""A stalled warehouse shows in the operations asset (DESIGN §14).

The simulator stalls inspections at WH-E by a known delay (SimOptions.stalled_warehouse); the real
main job builds the marts; the operations asset then must name received -> inspected the
bottleneck, fail that transition's check (and pass the others: a clean landscape), and report per
warehouse exactly the percentiles the simulator's truth file gives (quantile_cont on both sides).
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from click.testing import CliRunner

from pipelines.lib import trace as lib

pytestmark = pytest.mark.slow

AS_OF = "2026-11-01T00:00:00Z"
STALLED, STALL_H = "WH-E", 150.0


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def quantile_cont(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@pytest.fixture(scope="module")
def stalled(tmp_path_factory, dbt_manifest):
    from pipelines.runner import run_main_job
    from pipelines.settings import Settings
    from returnsync_sim.generator import simulate
    from returnsync_sim.options import SimOptions

    root = tmp_path_factory.mktemp("stalled")
    landing = root / "landing"
    simulate(
        60,
        11,
        landing,
        as_of=datetime(2026, 11, 1, tzinfo=UTC),
        options=SimOptions(fault_rate=0.0, stalled_warehouse=STALLED, stall_h=STALL_H),
        progress=False,
    )
    settings = Settings.from_env(env={}, base_dir=root, landing_dir=landing)
    outcome = run_main_job(settings, as_of=AS_OF, quiet=True)
    assert outcome.success, outcome
    with open(landing / "expected_stages.csv", encoding="utf-8") as f:
        truth = list(csv.DictReader(f))
    return settings, truth


@pytest.fixture(scope="module")
def materialized(stalled):
    from assets.operations import OPERATIONS_KEY, stage_latencies
    from pipelines.resources import SettingsResource

    settings, _ = stalled
    resource = SettingsResource(
        data_dir=str(settings.data_dir),
        db_path=str(settings.db_path),
        analyst_db_path=str(settings.analyst_db_path),
    )
    result = dg.materialize([stage_latencies], resources={"settings": resource})
    assert result.success
    (mat,) = [
        m
        for m in result.asset_materializations_for_node(stage_latencies.op.name)
        if m.asset_key == OPERATIONS_KEY
    ]
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return mat.metadata, checks


def slas() -> dict[str, float]:
    from pipelines.settings import PROJECT_ROOT

    path = PROJECT_ROOT / "dbt_project" / "seeds" / "recon_settings.csv"
    with open(path, encoding="utf-8") as f:
        rows = {r["setting"]: float(r["value"]) for r in csv.DictReader(f)}
    return {t: rows[f"sla_{t}_h"] for t in lib.TRANSITIONS}


def test_the_stall_is_in_the_truth(stalled):
    _, truth = stalled
    inspect = [r for r in truth if r["transition"] == "received_to_inspected" and r["ended_at"]]
    at_stalled = [float(r["latency_h"]) for r in inspect if r["warehouse"] == STALLED]
    elsewhere = [float(r["latency_h"]) for r in inspect if r["warehouse"] != STALLED]
    assert at_stalled and elsewhere
    assert min(at_stalled) >= STALL_H and max(elsewhere) < 72


def test_operations_metadata_equals_the_truth_per_warehouse(stalled, materialized):
    _, truth = stalled
    metadata, _ = materialized
    as_of = ts(AS_OF)
    compared = 0
    for window, days in (("7d", 7), ("30d", 30)):
        for t in lib.TRANSITIONS:
            groups: dict[str, list[float]] = {}
            for r in truth:
                ended = r["transition"] == t and r["ended_at"]
                if ended and as_of - timedelta(days=days) < ts(r["ended_at"]) <= as_of:
                    for scope in (f"warehouse={r['warehouse']}", f"channel={r['channel']}", "all"):
                        groups.setdefault(scope, []).append(float(r["latency_h"]))
            for scope, xs in groups.items():
                for q, p in lib.QUANTILES:
                    key = f"{t} {scope} {q}_{window}_h"
                    assert key in metadata, key
                    assert metadata[key].value == pytest.approx(quantile_cont(xs, p), abs=1e-3)
                    compared += 1
            # nothing is reported for a group without data in the window
            reported = {
                k.split(" ")[1]
                for k in metadata
                if k.startswith(f"{t} ") and k.endswith(f"p50_{window}_h")
            }
            assert reported == set(groups)
    assert compared > 50
    # the plotted values are numbers (Dagster plots float/int metadata run over run)
    assert isinstance(metadata["received_to_inspected all p90_30d_h"], dg.FloatMetadataValue)
    assert metadata["percentiles"].value.records


def test_the_stalled_stage_is_the_bottleneck_and_its_check_fails(stalled, materialized):
    _, truth = stalled
    metadata, checks = materialized
    as_of = ts(AS_OF)
    limits = slas()
    expected_fail = {}
    share = {}
    for t in lib.TRANSITIONS:
        week = [
            float(r["latency_h"])
            for r in truth
            if r["transition"] == t
            and r["ended_at"]
            and as_of - timedelta(days=7) < ts(r["ended_at"]) <= as_of
        ]
        p90 = quantile_cont(week, 0.9) if week else None
        overdue = [
            (as_of - ts(r["started_at"])) / timedelta(hours=1)
            for r in truth
            if r["transition"] == t
            and not r["ended_at"]
            and as_of - ts(r["started_at"]) >= timedelta(hours=limits[t])
        ]
        expected_fail[t] = (p90 is not None and p90 > limits[t]) or bool(overdue)
        share[t] = max(p90 or 0.0, max(overdue, default=0.0)) / limits[t]
    assert expected_fail == {
        "requested_to_received": False,
        "received_to_inspected": True,
        "inspected_to_posted": False,
        "refunded_to_credited": False,
    }
    for t in lib.TRANSITIONS:
        assert checks[f"{t}_within_sla"].passed is not expected_fail[t], t
    worst = max(share, key=share.get)
    assert worst == "received_to_inspected"
    assert metadata["bottleneck"].value == lib.TRANSITION_LABELS[worst]
    assert metadata["bottleneck_share_of_sla"].value == pytest.approx(share[worst], abs=1e-3)
    failing = checks["received_to_inspected_within_sla"]
    assert failing.metadata["sla_h"].value == limits["received_to_inspected"]


def test_overdue_lists_the_stalled_warehouse_only(stalled):
    from pipelines.cli import main

    settings, truth = stalled
    result = CliRunner().invoke(
        main,
        ["trace", "--overdue", "--format", "json", "--db", str(settings.analyst_db_path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)["overdue"]
    as_of = ts(AS_OF)
    limits = slas()
    want = {
        (r["rma_number"], r["transition"])
        for r in truth
        if not r["ended_at"]
        and as_of - ts(r["started_at"]) >= timedelta(hours=limits[r["transition"]])
    }
    assert {(o["rma_number"], o["transition"]) for o in listed} == want
    assert all(o["warehouse"] == STALLED for o in listed)
