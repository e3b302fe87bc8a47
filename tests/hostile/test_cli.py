"""The CLI against a held warehouse and a failing run, through the real `returnsync` command
(DESIGN §12): a command that finds the warehouse locked waits with backoff, says once whom it
waits for, and goes on when the holder lets go, or exits 3 naming the holder; a run that fails
names the step and its log in one line, with no traceback and no stale summary."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.errors import EXIT_FAILED, EXIT_LOCKED
from pipelines.lib.warehouse import connection
from tests.cli.helpers import clean_env, error_line, returnsync
from tests.writeback.helpers import add_mismatch, make_warehouse

HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("held", flush=True)
time.sleep(float(sys.argv[3]))
con.close()
print("released", flush=True)
"""


class Holder:
    """Another process holding the warehouse (a writer, or a reader's read-only session)."""

    def __init__(self, db: Path, mode: str, seconds: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db), mode, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "held"
        self.pid = self.process.pid

    def released(self) -> bool:
        return self.process.stdout.readline().strip() == "released"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def warehouse(tmp_path) -> Path:
    db = make_warehouse(tmp_path / "data" / "returnsync.duckdb")
    with connection(db) as con:
        add_mismatch(con, "stale_return", "RMA-L1")
    return db


def _waiting_line(stderr: str, pid: int) -> str:
    line = stderr.splitlines()[0]
    assert line.startswith("returnsync: the warehouse ") and f"is locked by PID {pid} (" in line
    assert HOLDER.strip().splitlines()[0] in line  # the holder's command line, when readable
    return line


def test_report_waits_for_a_writer_then_reads(tmp_path, warehouse):
    env = clean_env(tmp_path / "data")
    holder = Holder(warehouse, "rw", 2)
    try:
        started = time.monotonic()
        result = returnsync("report", "--format", "json", env=env)
        waited = time.monotonic() - started
        assert holder.released()
    finally:
        holder.stop()
    assert result.returncode == 0, result.stderr
    assert "waiting up to 120 s" in _waiting_line(result.stderr, holder.pid)
    assert len(result.stderr.splitlines()) == 1  # said once, however many retries
    assert waited >= 1.5 and "RMA-L1" in result.stdout


def test_a_writer_command_waits_for_a_reader_then_writes(tmp_path, warehouse):
    with connection(warehouse, read_only=True) as con:
        (mismatch,) = con.execute("select mismatch_id from recon.mismatches").fetchone()
    env = clean_env(tmp_path / "data")
    holder = Holder(warehouse, "ro", 2)
    try:
        result = returnsync("acknowledge", mismatch, "--by", "ann", env=env)
    finally:
        holder.stop()
    assert result.returncode == 0, result.stderr
    _waiting_line(result.stderr, holder.pid)
    with connection(warehouse, read_only=True) as con:
        assert con.execute("select status, acknowledged_by from recon.mismatches").fetchall() == [
            ("acknowledged", "ann")
        ]


def test_run_gives_up_after_the_lock_wait_naming_the_holder(tmp_path, warehouse):
    landing = tmp_path / "landing"
    (landing / "shopify").mkdir(parents=True)
    (landing / "shopify" / "refunds.ndjson").write_text('{"id": 1}\n')
    holder = Holder(warehouse, "ro", 60)  # an analyst's read-only session on the warehouse
    try:
        env = clean_env(tmp_path / "data", RETURNSYNC_LOCK_WAIT_S="1")
        started = time.monotonic()
        result = returnsync("run", "--landing", str(landing), env=env)
        waited = time.monotonic() - started
        assert result.returncode == EXIT_LOCKED, result.stderr
        _, error = result.stderr.splitlines()  # said once that it waits, then why it stops
        assert "waiting up to 1 s" in _waiting_line(result.stderr, holder.pid)
        assert (
            error.startswith("returnsync: error: the warehouse ") and "after waiting 1 s" in error
        )
        assert f"PID {holder.pid} (" in error and "Traceback" not in result.stderr
        assert 1 <= waited < 30

        no_wait = clean_env(tmp_path / "data", RETURNSYNC_LOCK_WAIT_S="0")
        line = error_line(returnsync("run", "--landing", str(landing), env=no_wait), EXIT_LOCKED)
        assert f"PID {holder.pid} (" in line
    finally:
        holder.stop()
    with connection(warehouse, read_only=True) as con:  # nothing landed
        assert con.execute("select count(*) from meta.files_landed").fetchall() == [(0,)]
        assert con.execute("select count(*) from raw.shopify_refunds").fetchall() == [(0,)]


@pytest.mark.slow
def test_a_failed_run_says_which_step_and_where_the_log_is_without_a_traceback(tmp_path):
    landing = tmp_path / "landing"
    made = returnsync(
        "simulate", "--returns", "20", "--seed", "5", "--out", str(landing),
        "--as-of", "2026-11-01T00:00:00Z", "--quiet",
        env=clean_env(tmp_path / "unused"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the analyst copy's folder should be\n")
    env = clean_env(tmp_path / "data", RETURNSYNC_ANALYST_DB=str(blocker / "analyst.duckdb"))
    result = returnsync("run", "--landing", str(landing), "--as-of", "2026-11-01", env=env)
    assert result.returncode == EXIT_FAILED, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "Stack Trace" not in result.stderr
    assert [line for line in lines if line.startswith("returnsync: error:")] == [lines[-1]]
    assert lines[-1].startswith("returnsync: error: step analyst__published failed: ")
    assert str(blocker) in lines[-1]
    log = Path(lines[-1].rsplit("(full log: ", 1)[1].rstrip(")"))
    assert log.parent == tmp_path / "data" / "logs" and "Stack Trace" in log.read_text()
    assert all(len(line) <= 240 for line in lines[:-1])  # progress lines, one event each
    assert "returnsync summary" not in result.stdout  # a failed run prints no summary
    db = duckdb.connect(str(tmp_path / "data" / "returnsync.duckdb"), read_only=True)
    try:  # the steps before the failure did their work: the failure is the publish only
        assert db.execute("select count(*) from recon.mismatches").fetchall()[0][0] > 0
    finally:
        db.close()
