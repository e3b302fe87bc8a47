"""Stage latencies and `returnsync trace` against the simulator's own truth (DESIGN §14).

The shared 200-return landscape (tests/fixtures/landscape.py) carries the stage observer's files
(returnsync_sim/stages.py): every transition and every stage record as planned. The mart, the
percentiles the operations asset shows, the overdue list and each traced timeline must equal them.
Percentile definition on both sides: linear interpolation between closest ranks (DuckDB
quantile_cont; `quantile_cont` below in Python).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime, timedelta

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib import trace as lib

pytestmark = pytest.mark.slow

WINDOWS = {"7d": 7, "30d": 30}
EVENT_STAGES = {"requested", "received", "inspected", "posted", "refunded", "credited"}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def quantile_cont(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def iso(t: datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def truth(simulated_run):
    landing = simulated_run.landing
    with open(landing / "expected_stages.csv", encoding="utf-8") as f:
        stages = list(csv.DictReader(f))
    with open(landing / "expected_stage_events.csv", encoding="utf-8") as f:
        events = list(csv.DictReader(f))
    assert stages and events
    return stages, events


@pytest.fixture(scope="module")
def published(simulated_run, tmp_path_factory):
    """A copy of the published file (the CLI under test opens the original in this process, and
    DuckDB refuses a second connection to one file with another configuration)."""
    import shutil

    copy = tmp_path_factory.mktemp("trace") / "published.duckdb"
    shutil.copy(simulated_run.settings.analyst_db_path, copy)
    con = duckdb.connect(str(copy), read_only=True)
    con.execute("set timezone = 'UTC'")
    yield con
    con.close()


@pytest.fixture(scope="module")
def slas():
    """The SLAs as the settings seed states them (the source the mart must read)."""
    from pipelines.settings import PROJECT_ROOT

    with open(PROJECT_ROOT / "dbt_project" / "seeds" / "recon_settings.csv", encoding="utf-8") as f:
        rows = {r["setting"]: float(r["value"]) for r in csv.DictReader(f)}
    return {t: rows[f"sla_{t}_h"] for t in lib.TRANSITIONS}


def invoke(simulated_run, *args):
    db = str(simulated_run.settings.analyst_db_path)
    return CliRunner().invoke(main, ["trace", *args, "--db", db], catch_exceptions=False)


def test_the_mart_has_exactly_the_simulated_transitions(published, truth):
    stages, _ = truth
    got = {
        (r[0], r[3]): r
        for r in published.execute(
            "select rma_number, channel, warehouse, transition, "
            "strftime(started_at, '%Y-%m-%dT%H:%M:%SZ'), "
            "coalesce(strftime(ended_at, '%Y-%m-%dT%H:%M:%SZ'), ''), latency_h "
            "from marts.return_stage_latencies"
        ).fetchall()
    }
    want = {
        (s["rma_number"], s["transition"]): (
            s["rma_number"],
            s["channel"],
            s["warehouse"],
            s["transition"],
            s["started_at"],
            s["ended_at"],
        )
        for s in stages
    }
    assert set(got) == set(want)
    assert {k: v[:6] for k, v in got.items()} == want
    for s in stages:
        latency = got[(s["rma_number"], s["transition"])][6]
        if s["latency_h"]:
            assert latency == pytest.approx(float(s["latency_h"]), abs=1e-9)
        else:
            assert latency is None
    # every transition kind and both open and closed ones are exercised
    assert {s["transition"] for s in stages} == set(lib.TRANSITIONS)
    assert any(not s["ended_at"] for s in stages) and any(s["ended_at"] for s in stages)


def truth_percentiles(stages, as_of: datetime) -> dict:
    groups: dict[tuple, list[float]] = {}
    for s in stages:
        if not s["ended_at"]:
            continue
        ended = ts(s["ended_at"])
        for window, days in WINDOWS.items():
            if as_of - timedelta(days=days) < ended <= as_of:
                latency = float(s["latency_h"])
                for dim, value in (
                    ("all", "all"),
                    ("channel", s["channel"]),
                    ("warehouse", s["warehouse"]),
                ):
                    groups.setdefault((s["transition"], dim, value, window), []).append(latency)
    return {
        k: (len(v), *(quantile_cont(v, q) for _, q in lib.QUANTILES)) for k, v in groups.items()
    }


def test_percentiles_equal_the_truth_per_transition_channel_and_warehouse(
    published, truth, simulated_run
):
    stages, _ = truth
    as_of = ts(simulated_run.as_of)
    want = truth_percentiles(stages, as_of)
    got = {
        (r["transition"], r["dimension"], r["value"], r["window"]): (
            r["n"],
            r["p50"],
            r["p90"],
            r["p99"],
        )
        for r in lib.percentiles(published)
    }
    assert set(got) == set(want)
    for key, (n, *qs) in want.items():
        assert got[key][0] == n, key
        assert got[key][1:] == pytest.approx(qs, abs=1e-6), key
    # the windows and groups are not trivially equal: 30 days hold more than 7 somewhere
    assert any(
        want[(t, "all", "all", "30d")][0] > want.get((t, "all", "all", "7d"), (0,))[0]
        for t in lib.TRANSITIONS
    )
    assert {k[2] for k in want if k[1] == "channel"} == {"shopify", "amazon", "b2b"}


def test_returns_kpis_reads_the_stage_latencies(published, truth):
    """returns_kpis' per-day stage p50/p90 equal the truth grouped by request day."""
    stages, events = truth
    requested = {e["rma_number"]: ts(e["at"]).date() for e in events if e["stage"] == "requested"}
    groups: dict[tuple, list[float]] = {}
    for s in stages:
        if s["latency_h"]:
            key = (requested[s["rma_number"]], s["channel"], s["warehouse"], s["transition"])
            groups.setdefault(key, []).append(float(s["latency_h"]))
    cols = ", ".join(f"{t}_p50_h, {t}_p90_h" for t in lib.TRANSITIONS)
    rows = published.execute(
        f"select day, channel, warehouse, {cols} from marts.returns_kpis"
    ).fetchall()
    seen = 0
    for row in rows:
        day, channel, warehouse, *values = row
        for i, t in enumerate(lib.TRANSITIONS):
            p50, p90 = values[2 * i], values[2 * i + 1]
            xs = groups.get((day, channel, warehouse, t))
            if xs is None:
                assert p50 is None and p90 is None, (day, channel, warehouse, t)
                continue
            seen += 1
            assert p50 == pytest.approx(quantile_cont(xs, 0.5), abs=1e-6)
            assert p90 == pytest.approx(quantile_cont(xs, 0.9), abs=1e-6)
    assert seen == len(groups)


def test_overdue_lists_exactly_the_open_transitions_past_their_sla(simulated_run, truth, slas):
    stages, _ = truth
    as_of = ts(simulated_run.as_of)
    want = {
        (s["rma_number"], s["transition"])
        for s in stages
        if not s["ended_at"]
        and as_of - ts(s["started_at"]) >= timedelta(hours=slas[s["transition"]])
    }
    result = invoke(simulated_run, "--overdue", "--format", "json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)["overdue"]
    assert {(o["rma_number"], o["transition"]) for o in listed} == want
    assert want, "the landscape has stale returns, unposted receipts and missing credits"
    for o in listed:
        assert o["overdue_h"] == pytest.approx(o["age_h"] - o["sla_h"], abs=0.02)
    table = invoke(simulated_run, "--overdue")
    assert table.exit_code == 0
    assert f"{len(want)} open transition(s) older than their SLA" in table.output


def chosen(truth) -> list[str]:
    """One return per channel with the most stage records, plus returns with a missing stage."""
    stages, events = truth
    per = Counter(e["rma_number"] for e in events)
    channel = {s["rma_number"]: s["channel"] for s in stages}
    picks = []
    for ch in ("shopify", "amazon", "b2b"):
        mine = [r for r in per if channel.get(r) == ch]
        picks.append(max(mine, key=lambda r: (per[r], r)))
    for t in lib.TRANSITIONS:
        open_ = sorted(
            s["rma_number"] for s in stages if s["transition"] == t and not s["ended_at"]
        )
        if open_:
            picks.append(open_[0])
    return list(dict.fromkeys(picks))


def test_trace_shows_exactly_the_simulated_events(simulated_run, truth, slas):
    stages, events = truth
    as_of = ts(simulated_run.as_of)
    for rma in chosen(truth):
        result = invoke(simulated_run, rma, "--format", "json")
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["matched_by"] == "rma"
        (timeline,) = out["returns"]
        got = Counter(
            (e["stage"], e["at"], e["system"])
            for e in timeline["events"]
            if e["stage"] in EVENT_STAGES
        )
        want = Counter((e["stage"], e["at"], e["system"]) for e in events if e["rma_number"] == rma)
        assert got == want, rma
        # time order, and each gap is the time since the previous event
        times = [ts(e["at"]) for e in timeline["events"]]
        assert times == sorted(times)
        for prev, e in zip(timeline["events"], timeline["events"][1:], strict=False):
            assert e["gap_h"] == pytest.approx(
                (ts(e["at"]) - ts(prev["at"])).total_seconds() / 3600, abs=0.01
            )
        for e in timeline["events"]:
            assert e["source"]["key"] and e["source"]["position"] and e["source"]["kind"]
        # missing stages: the open transitions of the truth, overdue by as_of - start - SLA
        open_ = {s["transition"]: s for s in stages if s["rma_number"] == rma and not s["ended_at"]}
        to_stage = {t: t.split("_to_")[1] for t in lib.TRANSITIONS}
        assert sorted(m["stage"] for m in timeline["missing"]) == sorted(to_stage[t] for t in open_)
        for t, s in open_.items():
            (m,) = [m for m in timeline["missing"] if m["stage"] == to_stage[t]]
            due = ts(s["started_at"]) + timedelta(hours=slas[t])
            assert m["due_at"] == iso(due)
            if due <= as_of:
                assert m["overdue"] and m["overdue_h"] == pytest.approx(
                    (as_of - due).total_seconds() / 3600, abs=0.01
                )
            else:
                assert not m["overdue"]


def test_trace_finds_a_return_by_rma_variants_order_and_tracking(simulated_run, truth):
    _, events = truth
    shop = next(e for e in events if e["rma_number"].startswith("LR-") and e["tracking_number"])
    rma = shop["rma_number"]
    for variant in (rma, rma.lower(), rma.replace("-", ""), " " + rma.replace("-", " ") + " "):
        out = json.loads(invoke(simulated_run, variant, "--format", "json").output)
        assert out["matched_by"] == "rma"
        assert [t["rma_number"] for t in out["returns"]] == [rma]
    by_order = json.loads(invoke(simulated_run, shop["order_ref"], "--format", "json").output)
    assert by_order["matched_by"] == "order"
    assert [t["rma_number"] for t in by_order["returns"]] == [rma]
    tracking = shop["tracking_number"].lower()
    by_tracking = json.loads(invoke(simulated_run, tracking, "--format", "json").output)
    assert by_tracking["matched_by"] == "tracking"
    assert [t["rma_number"] for t in by_tracking["returns"]] == [rma]
    # --by forces one kind: the RMA is no tracking number
    forced = invoke(simulated_run, rma, "--by", "tracking")
    assert forced.exit_code == 2
    table = invoke(simulated_run, rma)
    assert table.exit_code == 0 and f"RMA {rma}" in table.output and "gap" in table.output


def test_several_matches_give_one_timeline_each(simulated_run, tmp_path):
    """Two returns on one order (the customer sent a second parcel back): one timeline each."""
    import shutil

    copy = tmp_path / "analyst.duckdb"
    shutil.copy(simulated_run.settings.analyst_db_path, copy)
    con = duckdb.connect(str(copy))
    rma, order_ref = con.execute(
        "select rma_number, order_ref from marts.returns where channel = 'shopify' "
        "order by rma_number limit 1"
    ).fetchone()
    con.execute(
        "insert into marts.returns select * replace ("
        "return_key || 'b' as return_key, rma_number || '-B' as rma_number, "
        "rma_normalized || 'B' as rma_normalized) from marts.returns where rma_number = ?",
        [rma],
    )
    con.close()
    result = CliRunner().invoke(
        main, ["trace", order_ref, "--format", "json", "--db", str(copy)], catch_exceptions=False
    )
    out = json.loads(result.output)
    assert out["matched_by"] == "order"
    assert sorted(t["rma_number"] for t in out["returns"]) == [rma, f"{rma}-B"]
    table = CliRunner().invoke(main, ["trace", order_ref, "--db", str(copy)])
    assert "2 return(s) matched by order" in table.output
    assert table.output.count("RMA ") == 2


def test_nothing_found_exits_2_with_one_line(simulated_run):
    result = CliRunner().invoke(
        main,
        ["trace", "NO-SUCH-RMA-0", "--db", str(simulated_run.settings.analyst_db_path)],
    )
    assert result.exit_code == 2
    assert "no return matches" in result.output
    assert "Traceback" not in result.output
    both = CliRunner().invoke(
        main,
        ["trace", "X", "--overdue", "--db", str(simulated_run.settings.analyst_db_path)],
    )
    assert both.exit_code == 2


def test_trace_mismatch_shows_the_records_behind_it(simulated_run, published):
    rows = published.execute(
        "select mismatch_id, rule, rma_number, sku from recon.mismatches "
        "where status = 'open' and rule in ('receipt_not_posted', 'refund_without_credit', "
        "'unmatched_receipt') order by rule, mismatch_id"
    ).fetchall()
    rules = {r[1] for r in rows}
    assert {"receipt_not_posted", "refund_without_credit", "unmatched_receipt"} <= rules
    for mismatch_id, rule, rma, sku in rows:
        result = invoke(simulated_run, "--mismatch", mismatch_id, "--format", "json")
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["mismatch"]["mismatch_id"] == mismatch_id
        if rule == "unmatched_receipt":
            assert out["records"] and not out["returns"]
            assert all(r["stage"] == "received" and sku in r["sku"] for r in out["records"])
            continue
        (timeline,) = out["returns"]
        assert timeline["rma_number"] == rma
        stages = {e["stage"] for e in timeline["events"]}
        missing = {m["stage"] for m in timeline["missing"]}
        if rule == "receipt_not_posted":
            assert {"received", "inspected"} <= stages
            line = [e for e in timeline["events"] if e["stage"] in ("received", "inspected")]
            assert all(e["sku"] == [sku] for e in line)
            location = out["mismatch"]["location"]
            assert location
            assert not any(
                e["stage"] == "posted"
                and sku in e["sku"]
                and e["detail"].endswith(f"into {location}")
                for e in timeline["events"]
            )
        else:
            assert "refunded" in stages and "credited" not in stages and "credited" in missing
    short = invoke(simulated_run, "--mismatch", rows[0][0][:12])
    assert short.exit_code == 0 and rows[0][0] in short.output
    assert invoke(simulated_run, "--mismatch", "0" * 32).exit_code == 2
