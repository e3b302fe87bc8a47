"""End to end against the simulator's answer key: precision and recall exactly 1.000.

For each landscape: `returnsync simulate` writes the landing directory and
`expected_mismatches.csv` (rule, rma_number, sku); the CDC and file drops are landed with the
landing libraries, dbt builds seeds and models (rules included) for the same `as_of`, the
lifecycle merges the result, and the open mismatches must be exactly the answer key. A second
build on the same data must give the same ids.
"""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.dbt import dbt_executable
from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.files import land_files
from pipelines.lib.recon.lifecycle import apply_lifecycle, list_mismatches
from pipelines.lib.warehouse import connection
from pipelines.settings import DBT_PROJECT_DIR

pytestmark = pytest.mark.slow

# seed, returns, fault rate, as_of (midnight, and one second before midnight: the ERP's dates)
LANDSCAPES = [
    pytest.param(7, 200, 0.1, "2026-03-01T00:00:00Z", id="seed7-default-rate"),
    pytest.param(11, 160, 0.35, "2026-03-01T00:00:00Z", id="seed11-high-rate"),
    pytest.param(2026, 240, 0.2, "2026-11-26T23:59:59Z", id="seed2026-before-midnight"),
]


def simulate(out: Path, seed: int, returns: int, fault_rate: float, as_of: str) -> None:
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--returns",
            str(returns),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--as-of",
            as_of,
            "--fault-rate",
            str(fault_rate),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output


def dbt_build(db_path: Path, target: Path, as_of: str) -> None:
    env = {**os.environ, "RETURNSYNC_DB": str(db_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    done = subprocess.run(
        [
            dbt_executable(),
            "build",
            "--resource-type",
            "seed",
            "--resource-type",
            "model",
            "--vars",
            f'{{"as_of": "{as_of}"}}',
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target),
            "--log-path",
            str(target / "logs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:]


def reconcile(landing: Path, db_path: Path, target: Path, as_of: str) -> list[dict]:
    with connection(db_path) as con:
        land_cdc_files(con, landing, progress=False)
        land_files(con, landing)
    dbt_build(db_path, target, as_of)
    with connection(db_path) as con:
        apply_lifecycle(con)
        return list_mismatches(con, status="open")


def answer_key(landing: Path) -> set[tuple[str, str, str]]:
    with open(landing / "expected_mismatches.csv", newline="") as fh:
        return {(r["rule"], r["rma_number"], r["sku"]) for r in csv.DictReader(fh)}


@pytest.mark.parametrize(("seed", "returns", "fault_rate", "as_of"), LANDSCAPES)
def test_rules_reproduce_the_answer_key(tmp_path, seed, returns, fault_rate, as_of):
    """Every (rule, rma_number, sku) of the answer key is found, and nothing else is."""
    landing = tmp_path / "landing"
    db_path = tmp_path / "w.duckdb"
    simulate(landing, seed, returns, fault_rate, as_of)
    expected = answer_key(landing)
    assert expected, "the landscape has no injected fault"

    rows = reconcile(landing, db_path, tmp_path / "target", as_of)
    found = {(r["rule"], r["rma_number"] or "", r["sku"] or "") for r in rows}
    missed = sorted(expected - found)
    extra = sorted(found - expected)
    precision = len(found & expected) / len(found) if found else 1.0
    recall = len(found & expected) / len(expected)
    assert (missed, extra) == ([], []), f"precision {precision:.3f} recall {recall:.3f}"

    if seed != 7:
        return
    # the same data again (once, it costs a second build): the same ids, nothing new
    again = reconcile(landing, db_path, tmp_path / "target", as_of)
    assert {r["mismatch_id"] for r in again} == {r["mismatch_id"] for r in rows}
