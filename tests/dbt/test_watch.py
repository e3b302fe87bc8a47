"""`returnsync watch`, the warm path (issue 24): one long-lived process, dbt parsed once.

The session's simulated landscape arrives in two increments (the change streams and reference
files with half of every channel's file drops, then the other half) while `watch` runs as a real
process on its own warehouse and Dagster instance. Between the increments, with the watch idle,
`report` and `acknowledge` must work on the same warehouse without waiting (the lock wait is 0,
so a held warehouse fails them at once). After the second increment, the warm path's marts and
current mismatches must equal the cold `returnsync run` of the whole landscape (the session's
`simulated_run`), row for row; both increments are successful runs of `main_job` recorded in
the instance, dbt parsed once; the published analyst copy has `meta.freshness` matching what
landed, and `report --format md` shows it. SIGTERM stops the idle watch at once, exit 0.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.dbt import UNIT_TESTS_PASSED
from tests.dbt.test_incremental_marts import COMPARED

CHANNEL_DIRS = ("returns_saas", "shopify", "amazon", "b2b")
ALWAYS_FIRST = ("cdc", "reference")
ROOT = Path(__file__).resolve().parents[2]
INCREMENT_TIMEOUT_S = 600


class Watch:
    """The `returnsync watch` process, its standard error read line by line."""

    def __init__(self, env: dict[str, str], as_of: str) -> None:
        cmd = [
            sys.executable,
            "-c",
            "from pipelines.cli import main; main()",
            "watch",
            "--as-of",
            as_of,
            "--interval",
            "0.3",
            "--quiet",
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float = INCREMENT_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if needle in line:
                    return line
            assert self.proc.poll() is None, f"watch exited: {self.lines}"
            time.sleep(0.2)
        raise AssertionError(f"no {needle!r} within {timeout} s: {self.lines}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def drop(source: Path, landing: Path, half: int) -> int:
    """Copy half `half` (0, 1) of every channel's files, and with half 0 the CDC and reference
    files, into `landing` (written beside and renamed, as a real drop is)."""
    copied = 0
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and p.name[0] not in "._"):
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        if folder.name in ALWAYS_FIRST:
            chosen = files if half == 0 else []
        else:
            assert folder.name in CHANNEL_DIRS, folder
            chosen = files[: len(files) // 2] if half == 0 else files[len(files) // 2 :]
        for path in chosen:
            target = landing / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            shutil.copy(path, partial)
            os.replace(partial, target)
            copied += 1
    return copied


def differences(db: Path, other: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(f"attach '{other}' as other (read_only)")
        for table in COMPARED:
            rows = con.execute(f"select count(*) from {table}").fetchone()[0]
            here = con.execute(
                f"select count(*) from (from {table} except all from other.{table})"
            ).fetchone()[0]
            there = con.execute(
                f"select count(*) from (from other.{table} except all from {table})"
            ).fetchone()[0]
            out[table] = (rows, here, there)
    return out


# the session's landscape may be built in this test's setup (alone, 2-6 min on a loaded 2-core
# machine), then a watch start and two increments
@pytest.mark.timeout(1500)
def test_watch_runs_each_increment_warm_and_equals_a_cold_run(simulated_run, tmp_path):
    from pipelines.settings import ENV_VARS

    data = tmp_path / "data"
    landing = data / "landing"
    landing.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in {var for var, _ in ENV_VARS.values()}}
    env.update(
        RETURNSYNC_DATA_DIR=str(data),
        DAGSTER_HOME=str(tmp_path / "dagster"),
        RETURNSYNC_LOCK_WAIT_S="0",
        PYTHONPATH=str(ROOT),
    )
    assert drop(simulated_run.landing, landing, 0) > 20
    # the session's cold runs passed dbt's unit tests on this project: forget it, so the
    # watch's first increment runs them (pipelines.dbt.WarmDbt.unit_tests_due)
    (ROOT / "dbt_project" / "target" / UNIT_TESTS_PASSED).unlink(missing_ok=True)
    watch = Watch(env, simulated_run.as_of)
    try:
        watch.wait_for("watch: ready")
        first = watch.wait_for("watch: increment 1 ")
        assert " ok in " in first, watch.lines
        # dbt's unit tests run in the first build after the parse only (pipelines.dbt.WarmDbt)
        assert int(first.split("; dbt unit tests: ")[1].split(" ")[0]) > 0, first

        # idle: the warehouse is free for the report and an acknowledgement, at once
        cli = CliRunner()
        db = str(data / "returnsync.duckdb")  # explicit: this process's RETURNSYNC_DB is another
        report = cli.invoke(main, ["report", "--db", db], env=env)
        assert report.exit_code == 0, report.output
        rows = list(csv.DictReader(io.StringIO(report.stdout)))
        assert rows, report.output
        md = cli.invoke(main, ["report", "--db", db, "--format", "md"], env=env)
        assert md.exit_code == 0, md.output
        assert "**Freshness**" in md.stdout and "- returns_saas_webhooks: " in md.stdout
        mismatch_id = rows[0]["mismatch_id"]
        ack = cli.invoke(main, ["acknowledge", mismatch_id, "--by", "test", "--db", db], env=env)
        assert ack.exit_code == 0, ack.output
        with duckdb.connect(db, read_only=True) as con:
            status = con.execute(
                "select status from recon.mismatches where mismatch_id = ?", [mismatch_id]
            ).fetchone()
        assert status == ("acknowledged",)

        assert drop(simulated_run.landing, landing, 1) > 0
        second = watch.wait_for("watch: increment 2 ")
        assert " ok in " in second, watch.lines
        assert "; dbt unit tests: not run (passed)" in second, second
        time.sleep(1.0)  # idle again
        watch.proc.send_signal(signal.SIGTERM)
        assert watch.proc.wait(timeout=30) == 0, watch.lines
        watch.wait_for("watch: stopped after 2 increment(s), 0 failed; dbt parsed 1 time(s)", 5)
    finally:
        watch.stop()

    diff = differences(data / "returnsync.duckdb", simulated_run.settings.db_path)
    assert all(here == there == 0 for _, here, there in diff.values()), diff
    assert diff["marts.returns"][0] > 100 and diff["recon.recon_mismatches_current"][0] > 0

    with duckdb.connect(str(data / "returnsync.duckdb"), read_only=True) as con:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'raw'"
            ).fetchall()
        ]
        counts = {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in tables}
    with duckdb.connect(str(data / "analyst.duckdb"), read_only=True) as con:
        fresh = {r[0]: r[1:] for r in con.execute("from meta.freshness").fetchall()}
    assert {t: f[0] for t, f in fresh.items()} == counts
    assert all(f[1] is not None and f[2] for t, f in fresh.items() if counts[t]), fresh

    import dagster as dg

    from pipelines.eventlog import ReturnsyncEventLogStorage

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="main_job"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        # stored by returnsync's event log storage (a new instance's): every planned
        # materialization and check of the second increment has its result, and the index
        # names that run as the last to materialize the marts
        assert isinstance(instance.event_log_storage, ReturnsyncEventLogStorage)
        kinds = Counter(
            r.event_log_entry.dagster_event_type.value
            for r in instance.get_records_for_run(runs[0].run_id, limit=100_000).records
            if r.event_log_entry.is_dagster_event
        )
        done, planned = "ASSET_MATERIALIZATION", "ASSET_MATERIALIZATION_PLANNED"
        assert kinds[done] == kinds[planned] > 50, kinds
        done, planned = "ASSET_CHECK_EVALUATION", "ASSET_CHECK_EVALUATION_PLANNED"
        assert kinds[done] == kinds[planned] > 100, kinds
        latest = instance.get_latest_materialization_event(dg.AssetKey(["marts", "returns"]))
        assert latest is not None and latest.run_id == runs[0].run_id
