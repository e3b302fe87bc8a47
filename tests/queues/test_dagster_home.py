"""Where the CLI records its Dagster runs (pipelines.runner.dagster_home / instance): the instance
`make dev` reads, never a throw-away one (DESIGN §11). The end-to-end proof, a `returnsync run`
seen by the webserver, is in tests/ui/test_dagster_ui.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg

from pipelines.eventlog import ReturnsyncEventLogStorage
from pipelines.runner import dagster_home, dagster_yaml, instance
from pipelines.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_dagster_home_is_the_variable_when_set(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "elsewhere"), "RETURNSYNC_DATA_DIR": str(tmp_path / "d")}
    assert dagster_home(env=env) == tmp_path / "elsewhere"


def test_by_default_the_instance_is_make_devs_beside_data(tmp_path, monkeypatch):
    # the defaults, run from a checkout: data/ and .dagster_home/ side by side, as the Makefile
    # sets DAGSTER_HOME=$(CURDIR)/.dagster_home for `make dev`
    monkeypatch.chdir(tmp_path)
    assert dagster_home(env={}) == tmp_path / ".dagster_home"
    assert dagster_home(Settings.from_env(env={}), env={}) == tmp_path / ".dagster_home"
    # a data directory elsewhere keeps its runs beside it
    other = tmp_path / "srv" / "returnsync" / "data"
    env = {"RETURNSYNC_DATA_DIR": str(other)}
    assert dagster_home(env=env) == tmp_path / "srv" / "returnsync" / ".dagster_home"


def test_the_instance_is_persistent_and_created_with_telemetry_off(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    settings = Settings.from_env(env={}, base_dir=tmp_path)

    @dg.op
    def one():
        return 1

    @dg.job
    def tiny():
        one()

    with instance(settings) as inst:
        assert inst.is_persistent
        run_id = tiny.execute_in_process(instance=inst).run_id
    home = tmp_path / ".dagster_home"
    assert "enabled: false" in (home / "dagster.yaml").read_text()
    with dg.DagsterInstance.from_config(str(home)) as again:  # what the webserver opens
        assert again.get_run_by_id(run_id) is not None
        # returnsync's event log storage, on Dagster's own files (pipelines.eventlog)
        assert isinstance(again.event_log_storage, ReturnsyncEventLogStorage)
        assert again.get_records_for_run(run_id).records
    assert (home / "history" / "runs" / f"{run_id}.db").is_file()


def test_the_makefile_writes_the_instance_runner_writes(tmp_path):
    """`make dev`'s dagster.yaml (the Makefile's rule) is the one `runner.instance()` writes."""
    home = tmp_path / "made"
    subprocess.run(
        [
            "make",
            "-s",
            "-f",
            str(ROOT / "Makefile"),
            f"DAGSTER_HOME={home}",
            f"{home}/dagster.yaml",
        ],
        cwd=ROOT,
        check=True,
    )
    assert (home / "dagster.yaml").read_text() == dagster_yaml(home)
