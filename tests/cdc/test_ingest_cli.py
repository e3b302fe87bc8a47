"""`returnsync ingest` (issue 23): lands every source and builds nothing, as the Dagster job
`ingest_job` recorded in the instance, with a summary of what landed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.lib.contracts import CDC_TABLES

RETURNSYNC = Path(sys.executable).parent / "returnsync"


def _ingest(tmp_path: Path, landing: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(RETURNSYNC), "ingest", "--landing", str(landing), "--db", str(tmp_path / "w.duckdb"),
         *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip


def test_ingest_lands_everything_and_builds_nothing(tmp_path):
    from dataclasses import replace

    from returnsync_sim import SimOptions
    from returnsync_sim import simulate as run_simulation

    landing = tmp_path / "landing"
    run_simulation(25, 5, landing, datetime(2026, 12, 1, tzinfo=UTC), replace(SimOptions()),
                   progress=False)  # fmt: skip
    home = tmp_path / "dagster_home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "RETURNSYNC_DATA_DIR": str(tmp_path / "data"),
           "RETURNSYNC_CDC_DECODER": "columnar"}  # fmt: skip
    first = _ingest(tmp_path, landing, env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "CDC decoder columnar" in first.stderr
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        raw = {t.raw_table: con.execute(f"select count(*) from raw.{t.raw_table}").fetchone()[0]
               for t in CDC_TABLES}  # fmt: skip
        built = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema in ('staging', 'intermediate', 'marts')"
        ).fetchone()[0]
        letters = con.execute("select count(*) from meta.dead_letters").fetchone()[0]
    finally:
        con.close()
    assert all(n > 0 for n in raw.values()), raw
    assert built == 0  # nothing built, nothing reconciled
    total = sum(raw.values())
    lines = first.stdout.splitlines()
    assert lines[0].startswith("ingest ") and " rows landed" in lines[0]
    landed = int(lines[0].split(": ")[1].split(" rows")[0])
    assert landed >= total  # file drops too
    assert f"  raw.erp_sale_line: +{raw['erp_sale_line']}" in lines
    assert f"dead letters: +{letters}" in lines

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
    assert [r.job_name for r in runs] == ["ingest_job"]
    assert all(r.is_success for r in runs)


def test_ingest_refuses_a_missing_landing_and_a_bad_decoder(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "h"), "RETURNSYNC_DATA_DIR": str(tmp_path)}
    missing = _ingest(tmp_path, tmp_path / "nope", env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "landing").mkdir()
    bad = _ingest(tmp_path, tmp_path / "landing", {**env, "RETURNSYNC_CDC_DECODER": "fast"})
    assert bad.returncode == 2 and "RETURNSYNC_CDC_DECODER" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "w.duckdb").exists()  # nothing landed, no warehouse made
