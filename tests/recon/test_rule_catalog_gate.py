"""The gate of the rule catalog (issue 20): a new rule is one catalog row and one recon model.

A temporary copy of the project gets a toy rule through exactly those two files, then the copy's
own code (this .venv's Python, `PYTHONPATH` and the working directory pointing at the copy)
simulates a small landscape and runs the main job. The toy rule must then be a Dagster asset check
of the copy's definitions, a row of `returnsync report` and mismatches in `recon.mismatches`, with
the catalog's severity. Nothing else of the copy is edited.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
AS_OF = "2026-11-01T00:00:00Z"
TOY = "unauthorized_line"
TOY_MODEL = "recon_unauthorized_lines"
# one catalog row: a return line the ERP never authorized (no ERP return line quantity)
TOY_ROW = (
    f"{TOY},linkage,low,rma_sku,{TOY_MODEL},,,"
    '"the ERP has no return line for it: a person must authorize or reject it",'
    '"A returned line has no authorized quantity in the ERP"\n'
)
TOY_SQL = """-- toy rule: a return line with no authorized quantity in the ERP
select
    'unauthorized_line' as rule,
    lines.rma_number,
    lines.sku,
    lines.warehouse,
    cast(null as varchar) as location,
    'an ERP return line' as expected,
    'none' as actual,
    cast(null as decimal(18, 4)) as amount_delta,
    cast(null as decimal(18, 3)) as qty_delta,
    run.as_of as detected_at
from {{ ref('return_lines') }} as lines
cross join {{ ref('recon_run') }} as run
where lines.qty_authorized is null
"""
# what a copy leaves out: environments, data, build output, caches, history
SKIPPED = {
    ".git",
    "data",
    ".cache",
    ".dagster_home",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "returnsync.egg-info",
}


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIPPED or n.startswith(".venv")}
    if Path(folder).name == "dbt_project":
        skipped |= {"target", "logs"} & set(names)
    return skipped


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """The copy with the toy rule, after `simulate` and `run`: (project, env, warehouse)."""
    work = tmp_path_factory.mktemp("gate")
    project = work / "project"
    shutil.copytree(PROJECT_ROOT, project, ignore=_ignore)
    seeds = project / "dbt_project" / "seeds"
    with (seeds / "rule_catalog.csv").open("a", encoding="utf-8") as catalog:
        catalog.write(TOY_ROW)
    (project / "dbt_project" / "models" / "recon" / f"{TOY_MODEL}.sql").write_text(TOY_SQL)

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RETURNSYNC_", "DAGSTER_", "DBT_", "PYTHONPATH"))
    }
    env.update(
        PYTHONPATH=str(project),
        RETURNSYNC_DATA_DIR=str(work / "data"),
        RETURNSYNC_DB=str(work / "data" / "w.duckdb"),
        RETURNSYNC_LANDING=str(work / "landing"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    where = run(str(BIN / "python"), "-c", "import pipelines; print(pipelines.__file__)")
    assert where.stdout.strip() == str(project / "pipelines" / "__init__.py"), where
    simulated = run(
        str(BIN / "returnsync"), "simulate", "--returns", "40", "--seed", "3",
        "--out", str(work / "landing"), "--as-of", AS_OF, "--quiet",
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr[-2000:]
    ran = run(str(BIN / "returnsync"), "run", "--as-of", AS_OF, "--quiet")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return project, run, work / "data" / "w.duckdb"


def test_the_toy_rule_is_a_dagster_check_of_the_copy(copy_run):
    _, run, _ = copy_run
    listed = run(
        str(BIN / "python"),
        "-c",
        "from pipelines.definitions import defs\n"
        "for key in defs.resolve_asset_graph().asset_check_keys:\n"
        "    print(key.asset_key.to_user_string(), key.name)",
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    checks = set(listed.stdout.splitlines())
    assert f"recon/mismatches {TOY}" in checks
    assert "recon/mismatches receipt_not_posted" in checks  # beside the catalog's other rules


def test_the_toy_rule_is_in_the_lifecycle_with_the_catalogs_severity(copy_run):
    _, _, warehouse = copy_run
    with duckdb.connect(str(warehouse), read_only=True) as con:
        unauthorized = set(
            con.execute(
                "select rma_number, sku from marts.return_lines where qty_authorized is null"
            ).fetchall()
        )
        raised = con.execute(
            "select rma_number, sku, severity, status from recon.mismatches where rule = ?", [TOY]
        ).fetchall()
        in_union = con.execute(
            "select count(*) from recon.recon_mismatches_current where rule = ?", [TOY]
        ).fetchone()[0]
    assert unauthorized, "the landscape has no unauthorized line: the toy rule cannot show"
    assert {(rma, sku) for rma, sku, _, _ in raised} == unauthorized
    assert {(severity, status) for _, _, severity, status in raised} == {("low", "open")}
    assert in_union == len(raised)


def test_the_toy_rule_is_in_the_report(copy_run):
    _, run, warehouse = copy_run
    report = run(str(BIN / "returnsync"), "report", "--db", str(warehouse), "--rule", TOY)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert rows and {r["rule"] for r in rows} == {TOY}
    everything = run(str(BIN / "returnsync"), "report", "--db", str(warehouse))
    assert TOY in {r["rule"] for r in csv.DictReader(io.StringIO(everything.stdout))}
