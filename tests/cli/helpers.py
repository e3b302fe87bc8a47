"""Running the real `returnsync` command (`.venv/bin/returnsync`) in a subprocess, as a user does,
and checking what DESIGN §12 promises about its errors: the exit code, one line on standard
error, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RETURNSYNC = PROJECT_ROOT / ".venv" / "bin" / "returnsync"
# the same CLI with a fault injected first (tests/cli/faults.py)
WITH_FAULT = (sys.executable, "-m", "tests.cli.faults")


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The process environment without any RETURNSYNC_* or DAGSTER_HOME, data under `data_dir`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RETURNSYNC_") and k != "DAGSTER_HOME"
    }
    env["RETURNSYNC_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def returnsync(
    *args: str, env: dict[str, str], fault: tuple[str, ...] = (), timeout: float = 600
) -> subprocess.CompletedProcess:
    command = [*WITH_FAULT, *fault, "--"] if fault else [str(RETURNSYNC)]
    return subprocess.run(
        [*command, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(result: subprocess.CompletedProcess, code: int) -> str:
    """Assert the exit code, and that standard error is exactly one line and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Stack Trace" not in result.stderr
    assert lines[0].startswith("returnsync: "), lines[0]
    return lines[0]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on: bound, then closed again, so a connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
