"""Stopping a run politely (SIGTERM, or Ctrl-C) during dbt leaves nothing behind either.

The SIGKILL case is in test_kill_campaign.py. Here `returnsync run` gets SIGTERM (what `kill PID`,
systemd or a container stop sends) or, as Ctrl-C in a terminal does, SIGINT to its whole process
group while dbt, building in the run's own process, holds the warehouse: the run ends, every
process of it is gone within seconds, and the warehouse opens for writing.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.fixtures.tryton_server import PROJECT_ROOT
from tests.kill.harness import (
    AS_OF,
    RETURNSYNC,
    Command,
    base_env,
    building,
    fresh_landing,
    holds,
    opens_for_writing,
    processes_of,
    run_args,
    wait_gone,
    wait_until,
)

pytestmark = pytest.mark.slow

ENDS_WITHIN_S = 30  # a stopped run is gone within this (dbt is asked to stop, then killed)


@pytest.fixture(scope="module")
def landscape(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupts")
    subprocess.run(
        [*RETURNSYNC, "simulate", "--returns", "40", "--seed", "5", "--out",
         str(root / "landscape"), "--as-of", AS_OF],
        cwd=PROJECT_ROOT, env=base_env(root / "unused"), check=True, capture_output=True,
    )  # fmt: skip
    return root


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_stopping_a_run_during_dbt_leaves_no_child(landscape, how):
    landing = fresh_landing(landscape / "landscape", landscape / f"landing-{how}")
    data = landscape / how
    db = data / "returnsync.duckdb"
    run = Command(run_args(landing), base_env(data), landscape, new_session=how == "ctrl-c").start()
    try:
        dbt = wait_until(
            lambda: (
                run.process.poll() is not None
                or [p for p in processes_of(run.token) if holds(p, db) and building(p)]
            ),
            240,
            0.02,
        )
        assert run.process.poll() is None, f"the run ended before dbt: {run.output()}"
        assert dbt and run.stages()[-1:] == ["dbt"]
        if how == "sigterm":
            run.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(run.process.pid, signal.SIGINT)
        code = run.wait(ENDS_WITHIN_S)
        assert code != 0, "a stopped run must not report success"
        assert wait_gone(run.token) == []
        # DESIGN §12: a failed run prints no (stale) summary, and its error is one line
        assert "returnsync summary" not in run.output(), run.output()
        assert "Traceback" not in run.output(), run.output()
    finally:
        run.finish()
    assert opens_for_writing(db)
