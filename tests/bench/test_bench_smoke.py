"""The benchmark scripts at a toy size, so they cannot rot (no timing is asserted).

Each script runs as `make bench` runs it (its own Python process), with `--no-append` so
bench/RESULTS.md is left alone, and must print one JSON line {name, figures, reference, ratio,
versions, date}. The scripts' own checks run too: the rebuild and the increment must end with
exactly the simulator's answer key, and recon must find the same keys as datacompy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

SCRIPTS = [
    pytest.param("rebuild.py", ["--returns", "200", "--repeats", "1"], id="rebuild"),
    pytest.param(
        "incremental.py",
        ["--returns", "200", "--events", "200", "--repeats", "1"],
        id="incremental",
    ),
    pytest.param("recon.py", ["--rows", "5000", "--repeats", "1"], id="recon"),
    pytest.param("memory.py", ["--returns", "200", "--repeats", "1"], id="memory"),
    pytest.param(
        "eventlog.py",
        ["--assets", "4", "--checks", "6", "--steps", "2", "--repeats", "1"],
        id="eventlog",
    ),
]


@pytest.mark.parametrize(("script", "args"), SCRIPTS)
def test_bench_script_prints_its_json_line(tmp_path, script, args):
    extra = ["--work", str(tmp_path)] if script != "recon.py" else []
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, *extra, "--no-append"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stdout
    line = json.loads(lines[0])
    assert set(line) == {"name", "figures", "reference", "ratio", "versions", "date"}
    assert line["figures"]
    assert line["versions"]["duckdb"]
