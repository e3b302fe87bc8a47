"""The bottleneck questions of docs/analyst-questions.md answer what the simulator planned.

Each query runs on the published copy of the shared landscape (as analysts run it) and its rows
are compared with the stage observer's truth file (quantile_cont on both sides).
"""

from __future__ import annotations

import csv
import shutil
from datetime import datetime, timedelta

import duckdb
import pytest

from tests.analyst.test_analyst_questions import questions

pytestmark = pytest.mark.slow


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def quantile_cont(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@pytest.fixture(scope="module")
def setup(simulated_run, tmp_path_factory):
    copy = tmp_path_factory.mktemp("bottlenecks") / "published.duckdb"
    shutil.copy(simulated_run.settings.analyst_db_path, copy)
    con = duckdb.connect(str(copy), read_only=True)
    con.execute("set timezone = 'UTC'")
    with open(simulated_run.landing / "expected_stages.csv", encoding="utf-8") as f:
        truth = list(csv.DictReader(f))
    yield con, truth, ts(simulated_run.as_of)
    con.close()


def answer(con, title) -> list[dict]:
    rel = con.sql(questions()[title])
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def slas(con) -> dict[str, float]:
    return dict(
        con.execute(
            "select transition, max(sla_h) from marts.return_stage_latencies group by 1"
        ).fetchall()
    )


def closed_in(truth, as_of, days):
    return [
        r
        for r in truth
        if r["ended_at"] and as_of - timedelta(days=days) < ts(r["ended_at"]) <= as_of
    ]


def test_latency_by_transition_and_warehouse(setup):
    con, truth, as_of = setup
    groups: dict[tuple, list[float]] = {}
    for r in closed_in(truth, as_of, 30):
        groups.setdefault((r["transition"], r["warehouse"]), []).append(float(r["latency_h"]))
    rows = answer(con, "Stage latency by transition and warehouse, last 30 days")
    assert {(r["transition"], r["warehouse"]) for r in rows} == set(groups)
    limit = slas(con)
    for r in rows:
        xs = groups[(r["transition"], r["warehouse"])]
        assert r["transitions"] == len(xs)
        for col, q in (("p50_hours", 0.5), ("p90_hours", 0.9), ("p99_hours", 0.99)):
            assert float(r[col]) == pytest.approx(round(quantile_cont(xs, q), 1), abs=0.051)
        assert float(r["sla_hours"]) == limit[r["transition"]]


def test_open_stages_past_their_sla(setup):
    con, truth, as_of = setup
    limit = slas(con)
    want: dict[tuple, list[float]] = {}
    for r in truth:
        age = (as_of - ts(r["started_at"])) / timedelta(hours=1)
        if not r["ended_at"] and age >= limit[r["transition"]]:
            want.setdefault((r["transition"], r["warehouse"], r["channel"]), []).append(age)
    assert want
    rows = answer(con, "Open stages past their SLA by warehouse and channel")
    assert {(r["transition"], r["warehouse"], r["channel"]): r["overdue"] for r in rows} == {
        k: len(v) for k, v in want.items()
    }
    for r in rows:
        ages = want[(r["transition"], r["warehouse"], r["channel"])]
        assert float(r["oldest_hours"]) == pytest.approx(round(max(ages), 1), abs=0.051)


def test_bottleneck_per_channel(setup):
    con, truth, as_of = setup
    limit = slas(con)
    groups: dict[tuple, list[float]] = {}
    for r in closed_in(truth, as_of, 7):
        groups.setdefault((r["channel"], r["transition"]), []).append(float(r["latency_h"]))
    best: dict[str, tuple[float, str]] = {}
    for (channel, transition), xs in groups.items():
        share = quantile_cont(xs, 0.9) / limit[transition]
        if channel not in best or share > best[channel][0]:
            best[channel] = (share, transition)
    rows = answer(con, "The bottleneck per channel this week")
    assert {r["channel"]: r["bottleneck"] for r in rows} == {c: t for c, (_, t) in best.items()}
    for r in rows:
        assert float(r["p90_share_of_sla"]) == pytest.approx(
            round(best[r["channel"]][0], 2), abs=0.0051
        )
