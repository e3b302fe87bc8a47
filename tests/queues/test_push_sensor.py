"""The push sensor starts stopped, and the README's command turns it on (DESIGN §6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

from pipelines.settings import PROJECT_ROOT

SENSOR = "adjustment_push_sensor"


def test_the_push_sensor_starts_stopped_and_the_documented_command_starts_it(definitions, tmp_path):
    assert definitions.resolve_sensor_def(SENSOR).default_status == dg.DefaultSensorStatus.STOPPED

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETURNSYNC_", "DAGSTER_"))}
    env |= {"DAGSTER_HOME": str(home), "RETURNSYNC_DATA_DIR": str(tmp_path / "data")}
    dagster = Path(sys.executable).with_name("dagster")
    # the README's command, as written there (from the checkout)
    started = subprocess.run(
        [str(dagster), "sensor", "start", SENSOR, "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        states = {
            s.instigator_name: s.status
            for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        }
    assert states.get(SENSOR) == InstigatorStatus.RUNNING, states
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"dagster sensor start {SENSOR} -w workspace.yaml" in readme
