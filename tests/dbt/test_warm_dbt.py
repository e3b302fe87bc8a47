"""The warm dbt's quiet builds (pipelines.dbt.WarmDbt.invoke, issue 24).

A warm build writes no dbt.log and no JSON artifacts, and hands on only the events its callers
read; a failed one still leaves a dbt.log with every line dbt fired, the failing SQL's error
included. dbt's unit tests are due once per project fingerprint, across processes. All on the
real project, in this process, on a warehouse of the test's own.
"""

from __future__ import annotations

import json
import os

import duckdb
import pytest

from pipelines.dbt import (
    KEPT_EVENTS,
    PARSE_STATE_FILE,
    PARSE_STATE_PREFIX,
    WarmDbt,
    parse_state_dir,
    project_fingerprint,
    prune_parse_states,
)
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


def test_unit_tests_run_once_per_project_fingerprint(warm, tmp_path):
    dbt, settings = warm
    mark = tmp_path / "unit_tests_passed.json"
    dbt.passed_mark = mark
    assert dbt.fingerprint == project_fingerprint()
    assert dbt.unit_tests_due()  # nothing passed yet
    dbt.unit_tests_passed(dbt.parses)
    assert not dbt.unit_tests_due()
    assert json.loads(mark.read_text())["fingerprint"] == dbt.fingerprint

    # another process (a cold run after the watch): its own parse of the same project
    again = WarmDbt(settings)
    again.passed_mark = mark
    assert not again.unit_tests_due()

    # another version of the project, or of dbt or DuckDB: due again, in any process
    again.fingerprint = "another project version"
    again.unit_tested_parse = 0
    assert again.unit_tests_due()


def test_each_warehouse_keeps_its_own_partial_parse_state(warm, tmp_path, monkeypatch):
    """dbt throws its partial-parse state away when the profile (the warehouse path) changes:
    a parse for another warehouse in the same checkout must not cost this one a full parse."""
    dbt, settings = warm
    other = Settings.from_env({"RETURNSYNC_DATA_DIR": str(tmp_path / "other")})
    assert parse_state_dir(other) != parse_state_dir(settings)
    monkeypatch.setenv("RETURNSYNC_DB", str(other.db_path))
    elsewhere = WarmDbt(other)
    assert elsewhere.full_parse  # a warehouse never parsed for: in full
    assert (parse_state_dir(other) / PARSE_STATE_FILE).exists()

    monkeypatch.setenv("RETURNSYNC_DB", str(settings.db_path))
    again = WarmDbt(settings)  # the first warehouse after the other: its own state, reused
    assert not again.full_parse
    assert again.manifest.nodes.keys() == dbt.manifest.nodes.keys()
    db_name = settings.db_path.stem  # dbt-duckdb's database: the file's name
    assert {n.database for n in again.manifest.nodes.values() if n.resource_type == "model"} == {
        db_name
    }


def test_parse_states_are_pruned_to_the_newest(tmp_path, monkeypatch):
    monkeypatch.setattr("pipelines.dbt.targets_dir", lambda: tmp_path)
    for i in range(5):
        folder = tmp_path / f"{PARSE_STATE_PREFIX}{i}"
        folder.mkdir()
        (folder / PARSE_STATE_FILE).write_bytes(b"state")
        os.utime(folder / PARSE_STATE_FILE, (1000 + i, 1000 + i))
        os.utime(folder, (1000 + i, 1000 + i))
    (tmp_path / "returnsync_dbt_assets-abc-pid1").mkdir()  # a build's folder: not this one's
    kept_old = tmp_path / f"{PARSE_STATE_PREFIX}0"
    removed = prune_parse_states(keep=kept_old, kept=2)
    assert sorted(p.name for p in removed) == [f"{PARSE_STATE_PREFIX}{i}" for i in (1, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        *(f"{PARSE_STATE_PREFIX}{i}" for i in (0, 3, 4)),
        "returnsync_dbt_assets-abc-pid1",
    ]
