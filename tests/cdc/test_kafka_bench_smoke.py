"""bench/ingest.py at a toy size on the test broker, so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fixtures.kafka_broker import PROJECT_ROOT

pytestmark = pytest.mark.kafka


def test_ingest_bench_prints_its_json_line(kafka_bootstrap):
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "bench" / "ingest.py"), "--events", "3000",
         "--bootstrap", kafka_bootstrap, "--no-append"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stdout
    line = json.loads(lines[0])
    assert set(line) == {"name", "figures", "reference", "ratio", "versions", "date"}
    assert line["name"] == "cdc_ingest_kafka" and line["figures"]["events"] == 3000
    assert line["ratio"] > 0 and line["versions"]["duckdb"]
