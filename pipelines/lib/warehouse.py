"""The embedded DuckDB warehouse: connections, the `meta` schema, dead letters.

Schemas: `raw` (append-only change logs, written by the landing code), `meta` (ledgers, dead
letters, quarantine), and the dbt layers `staging`, `intermediate`, `marts`, `recon`.

DuckDB allows one writer per file (STACK_NOTES): open a connection for one piece of work and close
it before dbt, a subprocess, opens the file. Keep write transactions short.

Another process holding the file (a run, a reader's DuckDB session) makes `connect` wait with
bounded backoff, up to RETURNSYNC_LOCK_WAIT_S (DESIGN §12): it says once on standard error whom it
waits for, then raises `WarehouseLocked` (exit code 3) naming the holder's PID and command line.
Every command and every asset opens the warehouse through here, so the wait lives in one place.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from pipelines.errors import ConfigError, WarehouseLocked
from pipelines.lib.contracts import all_raw_tables
from pipelines.lib.migrations import migrate

T = TypeVar("T")

LOCK_ERROR = "Could not set lock on file"  # DuckDB's IOException when another process holds it
_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")
LOCK_BACKOFF_FIRST_S = 0.05
LOCK_BACKOFF_MAX_S = 2.0


@dataclass(frozen=True)
class DeadLetter:
    source: str
    position: str
    raw: str | None
    error: str


class NoWarehouse(ConfigError, FileNotFoundError):
    """A read-only open of a warehouse that does not exist (exit code 2)."""


def connect(
    db_path: Path | str, read_only: bool = False, *, lock_wait_s: float | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; a writer's connection makes sure the `raw` and `meta` schemas exist.

    Waits while another process holds the file, up to `lock_wait_s` (default:
    RETURNSYNC_LOCK_WAIT_S), then raises `WarehouseLocked`.
    """
    path = Path(db_path)
    if read_only and not path.exists():
        raise NoWarehouse(f"no warehouse at {path}: run `returnsync run` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = wait_for_lock(
        lambda: duckdb.connect(str(path), read_only=read_only), path, lock_wait_s=lock_wait_s
    )
    con.execute("set timezone = 'UTC'")
    if not read_only:
        ensure_schema(con)
    return con


def lock_holder(message: str) -> str:
    """Who holds the lock, from DuckDB's message: `PID n (command line)` when readable."""
    match = _HOLDER.search(message)
    if match is None:
        return "another process"
    pid = match.group("pid")
    command = match.group("program")
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() or command
    except OSError:
        pass
    command = " ".join(command.split())  # one line, whatever the holder's arguments hold
    if len(command) > 160:
        command = command[:157] + "..."
    return f"PID {pid} ({command})"


def wait_for_lock(
    open_fn: Callable[[], T],
    path: Path | str,
    *,
    lock_wait_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    announce: Callable[[str], None] | None = None,
) -> T:
    """`open_fn()` (which opens or attaches `path`), retried with backoff while another process
    holds the file's lock; after `lock_wait_s` seconds, `WarehouseLocked` naming the holder.

    The wait is announced once (default: one line on standard error). Any other error is raised
    as it is. Usable for anything that opens the warehouse file (e.g. an ATTACH).
    """
    if lock_wait_s is None:
        from pipelines.settings import lock_wait_seconds

        lock_wait_s = lock_wait_seconds()
    deadline = time.monotonic() + lock_wait_s
    delay = LOCK_BACKOFF_FIRST_S
    announced = False
    while True:
        try:
            return open_fn()
        except duckdb.IOException as exc:
            if LOCK_ERROR not in str(exc):
                raise
            holder = lock_holder(str(exc))
            own = f"PID {os.getpid()} " in holder + " "
            remaining = deadline - time.monotonic()
            if remaining <= 0 or own:
                waited = "" if own else f" after waiting {lock_wait_s:g} s"
                raise WarehouseLocked(
                    f"the warehouse {path} is still locked{waited} by {holder} "
                    "(RETURNSYNC_LOCK_WAIT_S sets how long to wait)"
                ) from None
            if not announced:
                text = (
                    f"returnsync: the warehouse {path} is locked by {holder}; "
                    f"waiting up to {lock_wait_s:g} s"
                )
                if announce is not None:
                    announce(text)
                else:
                    print(text, file=sys.stderr, flush=True)
                announced = True
            sleep(min(delay, remaining))
            delay = min(delay * 2, LOCK_BACKOFF_MAX_S)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Bring the `meta` state up to date (`migrations`) and create every raw table of the
    contracts, if missing.

    Raw tables exist even before anything landed, so dbt's sources always resolve.
    """
    migrate(con)
    for ddl in all_raw_tables().values():
        con.execute(ddl)


@contextmanager
def connection(
    db_path: Path | str, read_only: bool = False, *, lock_wait_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that is closed on exit, so dbt can open the file next."""
    con = connect(db_path, read_only=read_only, lock_wait_s=lock_wait_s)
    try:
        yield con
    finally:
        con.close()


def initialize(db_path: Path | str, *, lock_wait_s: float | None = None) -> Path:
    """Create the warehouse file with its `meta` and `raw` tables (idempotent), then close it.

    Also the way to wait until no other process holds the file (see `connect`)."""
    with connection(db_path, lock_wait_s=lock_wait_s):
        pass
    return Path(db_path)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, rolled back on any error: rows and their ledger positions land together."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def utcnow() -> datetime:
    return datetime.now(UTC)


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Any:
    """The single value of a one-row query, with the result fully consumed.

    DuckDB 2's Python client keeps a result open after `fetchone()` and then refuses
    `register()` and `sql()` on the connection ("unfinished result"); `fetchall()` closes it.
    """
    return con.execute(sql, params or []).fetchall()[0][0]


LANDING_MEMORY_LIMIT = "128MB"  # DuckDB's share while landing: ingestion's goal is 512 MB in all


@contextmanager
def memory_limit(con: duckdb.DuckDBPyConnection, limit: str | None) -> Iterator[None]:
    """Lower DuckDB's `memory_limit` on `con` for a block, restored afterwards (None: no change).

    DuckDB's buffer pool otherwise grows to 80% of RAM as raw tables are written; with a limit
    it writes out (or spills) what does not fit, and landing keeps a flat footprint.
    """
    if not limit:
        yield
        return
    previous = scalar(con, "select current_setting('memory_limit')")
    con.execute(f"set memory_limit = '{limit}'")
    try:
        yield
    finally:
        con.execute(f"set memory_limit = '{previous}'")


def write_dead_letters(con: duckdb.DuckDBPyConnection, letters: Iterable[DeadLetter]) -> int:
    """Record dead letters (idempotent by source and position); returns how many were new."""
    rows = [(d.source, d.position, d.raw, d.error) for d in letters]
    if not rows:
        return 0
    before = scalar(con, "select count(*) from meta.dead_letters")
    con.executemany(
        "insert or ignore into meta.dead_letters values (?, ?, ?, ?, current_timestamp)", rows
    )
    return scalar(con, "select count(*) from meta.dead_letters") - before


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        scalar(
            con,
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        )
    )
