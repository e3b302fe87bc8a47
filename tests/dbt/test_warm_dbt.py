"""The warm dbt's quiet builds (pipelines.dbt.WarmDbt.invoke, issue 24).

A warm build writes no dbt.log and no JSON artifacts, and hands on only the events its callers
read; a failed one still leaves a dbt.log with every line dbt fired, the failing SQL's error
included. Both on the real project, in this process, on a warehouse of the test's own.
"""

from __future__ import annotations

import os

import duckdb
import pytest

from pipelines.dbt import KEPT_EVENTS, WarmDbt
from pipelines.dbt_child import PARENT_ENV
from pipelines.settings import Settings


@pytest.fixture
def warm(tmp_path, monkeypatch):
    settings = Settings.from_env({"RETURNSYNC_DATA_DIR": str(tmp_path / "data")})
    settings.db_path.parent.mkdir(parents=True)
    duckdb.connect(str(settings.db_path)).close()
    # WarmDbt points this process's environment at the warehouse: restored after the test
    for key, value in {**settings.dbt_env(), PARENT_ENV: str(os.getpid())}.items():
        monkeypatch.setenv(key, value)
    return WarmDbt(settings), settings


def test_a_warm_build_writes_no_log_or_artifacts_and_keeps_only_result_events(warm, tmp_path):
    dbt, settings = warm
    target = tmp_path / "target-ok"
    ok, events, error = dbt.invoke(["seed", "--select", "rule_catalog"], target)
    assert ok and error is None
    assert all(
        e["info"]["name"] in KEPT_EVENTS or e["info"]["level"] in ("warn", "error") for e in events
    ), {e["info"]["name"] for e in events}
    assert {"LogSeedResult", "NodeFinished"} <= {e["info"]["name"] for e in events}
    written = {p.name for p in target.iterdir()}
    assert not written & {"dbt.log", "manifest.json", "run_results.json"}, written
    with duckdb.connect(str(settings.db_path), read_only=True) as con:
        assert con.execute("select count(*) from seeds.rule_catalog").fetchone()[0] > 0


def test_a_failed_warm_build_leaves_a_full_dbt_log(warm, tmp_path):
    dbt, _ = warm
    target = tmp_path / "target-failed"
    # no source landed: the staging model's query fails on the missing raw table
    ok, events, _ = dbt.invoke(["run", "--select", "stg_erp__currencies"], target)
    assert not ok
    errors = [e for e in events if e["info"]["level"] == "error"]
    assert errors and any("stg_erp__currencies" in e["info"]["msg"] for e in errors)
    log = (target / "dbt.log").read_text()
    assert "[debug]" in log and "[error]" in log
    assert "stg_erp__currencies" in log and "Catalog Error" in log
