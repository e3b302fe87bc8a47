"""A reader holding the warehouse when dbt opens it delays the build instead of failing it.

DuckDB lets one process write a file, and a reader (`returnsync report`, a sensor tick) holds
it for a moment. The Python side waits for the lock (`warehouse.wait_for_lock`); dbt, a child
process, retries its connect (`retries.connect_attempts` in dbt_project/profiles.yml).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import duckdb

from pipelines.dbt import dbt_executable
from pipelines.settings import DBT_PROJECT_DIR

HOLD_AFTER_CONNECT_S = 5  # beyond dbt-duckdb's first pauses (1 + 2 s): only retries get through


def test_dbt_waits_for_a_reader_holding_the_warehouse(tmp_path):
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
         "print('held', flush=True); sys.stdin.readline()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        dbt = subprocess.Popen(
            [dbt_executable(), "debug", "--no-use-colors", "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR)],
            env={**os.environ, "RETURNSYNC_DB": str(db), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines = []
        for line in dbt.stdout:  # dbt prints its connection settings just before connecting
            lines.append(line)
            if "Connection:" in line:
                break
        time.sleep(HOLD_AFTER_CONNECT_S)
        assert dbt.poll() is None, "dbt gave up while the reader held the warehouse"
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
        lines += dbt.stdout.readlines()
        assert dbt.wait(timeout=120) == 0, "".join(lines)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert any("Connection test: [OK" in line for line in lines), "".join(lines)
