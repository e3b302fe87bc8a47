"""The rules' dbt unit tests (models/recon/_recon__unit_tests.yml), run so CI runs them.

dbt unit tests need their inputs' relations to exist, so the project is first built `--empty`
(schemas only, no rows) in a throw-away warehouse; the parse goes to a private target path so the
code location's manifest is left alone.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from pipelines.dbt import dbt_executable
from pipelines.lib.warehouse import connection
from pipelines.settings import DBT_PROJECT_DIR

pytestmark = pytest.mark.slow


def dbt(args: list[str], db_path, target) -> subprocess.CompletedProcess:
    env = {
        **__import__("os").environ,
        "RETURNSYNC_DB": str(db_path),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    return subprocess.run(
        [
            dbt_executable(),
            *args,
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


def test_recon_rule_unit_tests_pass(tmp_path):
    db_path = tmp_path / "w.duckdb"
    target = tmp_path / "target"
    with connection(db_path):
        pass  # raw and meta schemas, so dbt's sources resolve
    built = dbt(
        [
            "build",
            "--empty",
            "--select",
            "+path:models/recon",
            "--resource-type",
            "seed",
            "--resource-type",
            "model",
        ],
        db_path,
        target,
    )
    assert built.returncode == 0, built.stdout[-4000:]
    tested = dbt(["test", "--select", "path:models/recon,test_type:unit"], db_path, target)
    assert tested.returncode == 0, tested.stdout[-6000:]
    # every unit test written in the YAML ran and passed (the count comes from the YAML, so a
    # test dbt silently stops selecting, or a new one that fails, shows here)
    written = {
        t["name"]
        for path in (DBT_PROJECT_DIR / "models" / "recon").glob("*.yml")
        for t in (yaml.safe_load(path.read_text()) or {}).get("unit_tests", [])
    }
    assert written, "no unit tests found under models/recon"
    results = json.loads((target / "run_results.json").read_text())["results"]
    ran = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results}
    assert set(ran) == written, (sorted(written - set(ran)), sorted(set(ran) - written))
    assert {n for n, status in ran.items() if status != "pass"} == set()
    assert f"PASS={len(written)} " in tested.stdout, tested.stdout[-3000:]
