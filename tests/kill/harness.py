"""What the kill tests share: real `returnsync` subprocesses, their stage markers, their processes.

- Every process a test starts carries `RETURNSYNC_KILL_TEST=<token>` in its environment, and so
  does every process those start (dagster-dbt and the dbt wrapper pass the environment on): after a
  kill, `/proc/*/environ` tells which processes of that run are still alive, wherever they were
  re-parented.
- `RETURNSYNC_STAGE_MARKER` points each run at its own marker file (`pipelines.lib.stages`): the
  stage a kill hit is read from what the process wrote before it died, never guessed by time.
- `snapshot()` reads every table of the compared schemas, sorted, without the timestamp columns
  listed in `EXCLUDED` (each with its reason).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tests.fixtures.tryton_server import PROJECT_ROOT

RETURNSYNC = (sys.executable, "-c", "from pipelines.cli import main; main()")
TOKEN_ENV = "RETURNSYNC_KILL_TEST"
AS_OF = "2026-11-01T00:00:00Z"
GONE_WITHIN_S = 5.0  # after the kill, every process of the run is gone within this

COMPARED_SCHEMAS = ("raw", "meta", "marts", "recon", "writeback")

# Columns left out of the comparison: wall-clock times of when something happened on this
# machine, one file-system fact and the run's id. Everything else, every row, must be equal.
EXCLUDED: dict[str, str] = {
    "raw.*._ingested_at": "when the row landed (wall clock)",
    "meta.dead_letters.failed_at": "when the line was dead-lettered (wall clock)",
    "meta.files_landed.landed_at": "when the file landed (wall clock)",
    "meta.file_hashes.hashed_at": "when the file was hashed (wall clock)",
    "meta.file_hashes.inode": "the inode of this case's copy of the landscape (a file-system "
    "fact of the copy; path, size and mtime are compared)",
    "meta.quarantine.quarantined_at": "when the file was quarantined (wall clock)",
    "meta.schema_migrations.applied_at": "when the migration ran (wall clock)",
    "meta.stream_offsets.updated_at": "when the offset moved (wall clock)",
    "writeback.adjustments.created_at": "when the adjustment was planned (wall clock)",
    "writeback.adjustments.updated_at": "when its row last changed (wall clock)",
    "writeback.adjustments.approved_at": "when `auto` approved it (wall clock)",
    "writeback.adjustments.sent_at": "when the ERP answered (wall clock)",
    "writeback.exceptions.created_at": "when the exception was opened (wall clock)",
    "writeback.exceptions.updated_at": "when it last changed (wall clock)",
    "writeback.attempts.at": "when the ERP call was made (wall clock)",
    "meta.reference_versions.arrived_at": "when the reference file version arrived (wall clock)",
    "meta.source_status.run_at": "when the source's status was recorded (wall clock)",
    "recon.run_context.written_at": "when the run told dbt its as_of (wall clock)",
    "recon.run_context.run_id": "the id Dagster gave the run (a new one per run, not a fact "
    "of the data)",
}

# Whole tables that describe the last dbt build rather than the data: a rerun after a kill builds
# the same rows with a different scope.
EXCLUDED_TABLES: dict[str, str] = {
    "recon.recon_touched": "the returns the last build of the rule models recomputed (its "
    "scope: all of them on a first build, the few a rerun touched or found due after a kill)",
}


def _excluded(schema: str, table: str, column: str) -> bool:
    return f"{schema}.{table}.{column}" in EXCLUDED or f"{schema}.*.{column}" in EXCLUDED


Snapshot = dict[str, tuple[list[str], list[tuple]]]


def snapshot(db: Path) -> Snapshot:
    """Every table of COMPARED_SCHEMAS: its compared columns and its rows, sorted."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ? and table_type = 'BASE TABLE' order by 1, 2",
            [list(COMPARED_SCHEMAS)],
        ).fetchall()
        out: Snapshot = {}
        for schema, table in tables:
            if f"{schema}.{table}" in EXCLUDED_TABLES:
                continue
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if not _excluded(schema, table, c)
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(f'select {select} from "{schema}"."{table}"').fetchall()
            out[f"{schema}.{table}"] = (columns, sorted(rows, key=repr))
        return out
    finally:
        con.close()


def differences(expected: Snapshot, actual: Snapshot, limit: int = 5) -> list[str]:
    """What differs, table by table (at most `limit` rows each way), for an assertion message."""
    problems = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual or name not in expected:
            problems.append(f"{name}: only in {'baseline' if name in expected else 'this run'}")
            continue
        (cols_e, rows_e), (cols_a, rows_a) = expected[name], actual[name]
        if cols_e != cols_a:
            problems.append(f"{name}: columns {cols_a} instead of {cols_e}")
            continue
        if rows_e != rows_a:
            missing = [r for r in rows_e if r not in rows_a][:limit]
            extra = [r for r in rows_a if r not in rows_e][:limit]
            problems.append(
                f"{name} ({len(rows_a)} rows, baseline {len(rows_e)}), columns {cols_e}: "
                f"missing {missing}, unexpected {extra}"
            )
    return problems


# -- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    cmdline: str
    fds: list[str] = field(default_factory=list)


def processes_of(token: str) -> list[Proc]:
    """Live processes whose environment carries this token (zombies have none)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                env = handle.read().split(b"\0")
            if needle not in env:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
            fds = []
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    fds.append(os.readlink(fd.path))
                except OSError:
                    continue
        except OSError:
            continue  # gone meanwhile, or not ours to read
        found.append(Proc(int(entry.name), cmdline, fds))
    return found


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.002):
    """Poll `condition` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_gone(token: str, timeout: float = GONE_WITHIN_S) -> list[Proc]:
    """Wait until no process of the token is left; returns those still alive at the timeout."""
    wait_until(lambda: not processes_of(token), timeout, interval=0.05)
    return processes_of(token)


# -- a returnsync command under test ---------------------------------------------------------


@dataclass
class Command:
    """One `returnsync` subprocess with its own token, marker file and captured output."""

    args: tuple[str, ...]
    env: dict[str, str]
    work: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    new_session: bool = False  # its own process group, as a shell's foreground job has
    process: subprocess.Popen | None = None

    @property
    def markers_path(self) -> Path:
        return self.work / f"markers-{self.token[:8]}.txt"

    @property
    def stdout_path(self) -> Path:
        return self.work / f"stdout-{self.token[:8]}.txt"

    @property
    def stderr_path(self) -> Path:
        return self.work / f"stderr-{self.token[:8]}.txt"

    def start(self) -> Command:
        env = {
            **self.env,
            TOKEN_ENV: self.token,
            "RETURNSYNC_STAGE_MARKER": str(self.markers_path),
            "PYTHONUNBUFFERED": "1",  # progress lines reach the file as they are written
        }
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [*RETURNSYNC, *self.args],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=self.new_session,
            )
        return self

    def stages(self) -> list[str]:
        """The stage markers this command's own process wrote, in order."""
        try:
            lines = self.markers_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        pid = str(self.process.pid)
        return [line.split()[0] for line in lines if line.split()[1:] == [pid]]

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        return (
            self.stdout()[-3000:]
            + self.stderr_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=120)

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def finish(self) -> None:
        """Make sure nothing of it is left (a failed test's cleanup)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for proc in processes_of(self.token):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment minus every RETURNSYNC_* setting, pointed at `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETURNSYNC_")}
    env.pop("DAGSTER_HOME", None)  # the instance beside each case's data dir, not the checkout's
    env.update(
        {
            "RETURNSYNC_DATA_DIR": str(data_dir),
            "RETURNSYNC_LOCK_WAIT_S": "2",  # a lock still held is a failure, not a long wait
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "GX_ANALYTICS_ENABLED": "False",
            **extra,
        }
    )
    return env


def run_args(landing: Path) -> tuple[str, ...]:
    return ("run", "--quiet", "--landing", str(landing), "--as-of", AS_OF)


def fresh_landing(pristine: Path, landing: Path) -> Path:
    """A copy of the simulated landscape at `landing` (always the same path: the ledger stores
    it), mtimes kept. Landing moves files (quarantine), so every run gets its own copy."""
    if landing.exists():
        shutil.rmtree(landing)
    shutil.copytree(pristine, landing, symlinks=True)
    return landing


def holds(proc: Proc, path: Path) -> bool:
    target = str(Path(path).resolve())
    return any(fd == target for fd in proc.fds)


def building(proc: Proc) -> bool:
    """dbt, in this process, has executed a model: the build's folder
    (`pipelines.dbt.run_target_path`, named with the pid) holds a model's run SQL.

    `returnsync run` builds in its own process (`pipelines.dbt.in_process`), so "dbt is
    running" is this, not a dbt child."""
    from pipelines.dbt import targets_dir

    return any(
        any((folder / "run").rglob("*.sql"))
        for folder in targets_dir().glob(f"returnsync_dbt_assets-*-pid{proc.pid}")
    )


def opens_for_writing(db: Path) -> bool:
    """The warehouse can be opened read-write (no process holds its lock)."""
    con = duckdb.connect(str(db))
    try:
        con.execute("select 1").fetchone()
    finally:
        con.close()
    return True
