"""End to end: `returnsync run` (the code location's `main_job`) on a landscape of interacting
faults reports exactly the simulator's answer key.

The landscape: 1,000 returns, more than 30 % of them carrying two or three faults at once
(`scenarios.COMBOS`: stock and money faults on one return, a currency fault hiding an amount
fault, faults laid on returns exactly at a window's edge), every grace near miss one second inside
its window, the amount near miss exactly at the tolerance, and all the delivery noise (duplicates,
reordering, late events, malformed records, typos). The key is what the simulator injected,
never the product's SQL; an independent naive reading of the files (`tests/simulate/oracle.py`)
must agree with it first, so a disagreement below is the product's.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from returnsync_sim import SimOptions, simulate
from returnsync_sim.scenarios import BY_NAME, COMBO_BY_NAME
from tests.simulate.oracle import analyse

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC)
RETURNS = 1_000
OPTIONS = SimOptions(fault_rate=0.12, multi_fault_rate=0.6, near_miss_margin_s=1)
EDGE_NEAR_MISSES = {"nm_posting_grace", "nm_credit_grace", "nm_stale_grace", "nm_unmatched_grace"}
EDGE_FAULTS = {
    "receipt_not_posted_at_boundary",
    "missing_credit_at_boundary",
    "unmatched_receipt_at_boundary",
    "stale_return_at_boundary",
}
RETURNSYNC = str(Path(sys.executable).with_name("returnsync"))


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def faults_of(row: dict) -> tuple[str, ...]:
    if row["kind"] == "combo":
        return COMBO_BY_NAME[row["scenario"]].faults
    return BY_NAME[row["scenario"]].faults


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("e2e")
    simulate(RETURNS, 26, data / "landing", AS_OF, OPTIONS, progress=False)
    return data


def test_the_landscape_is_what_the_test_claims(landscape):
    """Guards the premise: enough returns, enough interaction, edges present, key independent."""
    landing = landscape / "landing"
    rows = read_csv(landing / "scenarios.csv")
    by_return = Counter()
    for row in rows:
        if row["channel"] != "wms":  # an extra WMS receipt rides along with a clean return
            by_return[row["rma_number"]] += len(faults_of(row))
    multi = sum(1 for n in by_return.values() if n >= 2)
    assert multi / RETURNS >= 0.30, f"{multi} of {RETURNS} returns carry two or more faults"
    names = {n for row in rows for n in (row["scenario"], *row["scenario"].split("+"))}
    assert EDGE_NEAR_MISSES | EDGE_FAULTS | {"nm_amount_at_tolerance"} <= names
    assert any("+" in r["scenario"] and r["scenario"].split("+")[0] in EDGE_FAULTS for r in rows)

    key = {
        (r["rule"], r["rma_number"], r["sku"])
        for r in read_csv(landing / "expected_mismatches.csv")
    }
    found, _, _ = analyse(landing, AS_OF)
    assert found == key, (sorted(key - found)[:10], sorted(found - key)[:10])
    assert len({rule for rule, _, _ in key}) == 11  # every rule is exercised


@pytest.mark.timeout(300)  # the budget: five minutes for the run and the report
def test_main_job_reports_exactly_the_answer_key(landscape):
    landing = landscape / "landing"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETURNSYNC_", "DAGSTER_"))}
    env["RETURNSYNC_DATA_DIR"] = str(landscape)
    as_of = AS_OF.isoformat().replace("+00:00", "Z")

    started = time.monotonic()
    run = subprocess.run(
        [RETURNSYNC, "run", "--quiet", "--as-of", as_of],
        env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = subprocess.run(
        [RETURNSYNC, "report", "--format", "csv"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    elapsed = time.monotonic() - started

    reported = [
        (r["rule"], r["rma_number"], r["sku"], r["status"])
        for r in csv.DictReader(report.stdout.splitlines())
    ]
    assert {status for *_, status in reported} == {"open"}
    # one row per (rule, natural key) in the key; the report may hold one per location of it
    got = {row[:3] for row in reported}
    key = {
        (r["rule"], r["rma_number"], r["sku"])
        for r in read_csv(landing / "expected_mismatches.csv")
    }
    missed, extra = sorted(key - got), sorted(got - key)
    assert not missed and not extra, f"missed {missed[:20]}; extra {extra[:20]}"

    # every corrupted record is a dead letter, and nothing else is
    expected_dead = {
        (r["source"], r["position"]) for r in read_csv(landing / "expected_dead_letters.csv")
    }
    with duckdb.connect(str(landscape / "returnsync.duckdb"), read_only=True) as con:
        dead = set(con.execute("select source, position from meta.dead_letters").fetchall())
    assert dead == expected_dead, (sorted(expected_dead - dead), sorted(dead - expected_dead))
    assert elapsed < 300, f"run + report took {elapsed:.0f} s"

    # money per case (DESIGN §11): each case's money and goods at risk per currency are the
    # simulator's (returnsync_sim/money.py), with two or three faults on one return
    found: dict[tuple[str, str], list[Decimal]] = {}
    for r in csv.DictReader(report.stdout.splitlines()):
        if r["amount_delta"] or r["money_at_risk"] or r["goods_at_risk"]:
            assert r["currency"], r  # every amount has its currency
        for i, column in enumerate(("money_at_risk", "goods_at_risk")):
            if r[column]:
                sums = found.setdefault((r["rma_number"], r["currency"]), [Decimal(0)] * 2)
                sums[i] += Decimal(r[column])
    money = {
        (r["rma_number"], r["currency"]): [Decimal(r["money_at_risk"]), Decimal(r["goods_at_risk"])]
        for r in read_csv(landing / "expected_money.csv")
    }
    assert {k: v for k, v in found.items() if any(v)} == money
