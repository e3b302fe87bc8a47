"""The embedded DuckDB warehouse: connections, the `meta` schema, dead letters.

Schemas: `raw` (append-only change logs, written by the landing code), `meta` (ledgers, dead
letters, quarantine), and the dbt layers `staging`, `intermediate`, `marts`, `recon`.

DuckDB allows one writer per file (STACK_NOTES): open a connection for one piece of work and close
it before dbt, a subprocess, opens the file. Keep write transactions short.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.lib.contracts import all_raw_tables
from pipelines.lib.migrations import migrate


@dataclass(frozen=True)
class DeadLetter:
    source: str
    position: str
    raw: str | None
    error: str


def connect(db_path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; a writer's connection makes sure the `raw` and `meta` schemas exist."""
    path = Path(db_path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: run `returnsync run` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set timezone = 'UTC'")
    if not read_only:
        ensure_schema(con)
    return con


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Bring the `meta` state up to date (`migrations`) and create every raw table of the
    contracts, if missing.

    Raw tables exist even before anything landed, so dbt's sources always resolve.
    """
    migrate(con)
    for ddl in all_raw_tables().values():
        con.execute(ddl)


@contextmanager
def connection(db_path: Path | str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that is closed on exit, so dbt can open the file next."""
    con = connect(db_path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def initialize(db_path: Path | str) -> Path:
    """Create the warehouse file with its `meta` and `raw` tables (idempotent), then close it."""
    with connection(db_path):
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
