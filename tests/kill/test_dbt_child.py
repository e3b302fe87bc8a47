"""`returnsync-dbt` (pipelines/dbt_child.py): dbt that dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.dbt import WRAPPER, dbt_executable
from pipelines.dbt_child import EXIT_ORPHANED, PARENT_ENV, _orphaned
from tests.fixtures.tryton_server import PROJECT_ROOT
from tests.kill.harness import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_death_signal_survives_exec(tmp_path):
    """A parent starts a child that arms the death signal and execs `sleep`; SIGKILL the parent
    and the exec'd child goes too (what happens to dbt when a run is killed)."""
    child = (
        "import os; from pipelines.dbt_child import die_with_parent; "
        "assert die_with_parent(); os.execv('/bin/sleep', ['sleep', '120'])"
    )
    parent = textwrap.dedent(
        f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", {child!r}])
        print(p.pid, flush=True)
        time.sleep(120)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
    )
    grandchild = int(process.stdout.readline())
    try:
        assert wait_until(
            lambda: (
                _alive(grandchild)
                and Path(f"/proc/{grandchild}/cmdline").read_bytes().startswith(b"sleep")
            ),
            10,
            0.01,
        )
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert wait_until(lambda: not _alive(grandchild), 5, 0.01)
    finally:
        process.kill()
        process.wait()
        if _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_dbt_runs_through_the_wrapper():
    executable = dbt_executable()
    assert Path(executable).name == WRAPPER, "returnsync-dbt is not installed (make install)"
    result = subprocess.run(
        [executable, "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, PARENT_ENV: str(os.getpid())},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Core" in result.stdout


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_wrapper_whose_launcher_is_gone_does_not_start_dbt():
    # the launcher it was told of is gone and is not its parent: it died before prctl was armed
    result = subprocess.run(
        [dbt_executable(), "--version"],
        capture_output=True,
        env={**os.environ, PARENT_ENV: str(_dead_pid())},
        timeout=60,
    )
    assert result.returncode == EXIT_ORPHANED and b"Core" not in result.stdout
    assert b"dbt not started" in result.stderr


def test_orphaned():
    dead, me = str(_dead_pid()), str(os.getpid())
    assert _orphaned(42, dead) and _orphaned(1, None)
    assert not _orphaned(int(me), me) and not _orphaned(42, None)
    assert not _orphaned(42, me)  # a stale value from a live ancestor: dbt starts
