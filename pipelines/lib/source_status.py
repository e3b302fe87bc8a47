"""Which landing sources are stale (DESIGN §12: a degraded source does not stop the others).

Each landing source (`cdc`, `erp_pull`, and each raw file table, e.g. `shopify_refunds`) records
how its last landing went in `meta.source_status` (migration 3): `ok`, or `stale` with the error
in one line. A stale source makes its run partial: dbt still builds and reconciles what landed,
but the planner plans and auto-approves nothing (`writeback.plan`), the run summary and
`returnsync report` name the stale sources, and `returnsync run` exits 1. The next landing of that
source that succeeds marks it `ok` again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

CDC = "cdc"
ERP_PULL = "erp_pull"
OK = "ok"
STALE = "stale"
TABLE = "meta.source_status"
ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class SourceStatus:
    source: str
    status: str
    error: str | None
    run_at: datetime


def one_line(error: BaseException | str) -> str:
    """An error as one line: `Type: first line of the message`, at most `ERROR_MAX_CHARS`."""
    if isinstance(error, BaseException):
        lines = str(error).strip().splitlines()
        text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    else:
        lines = error.strip().splitlines()
        text = lines[0] if lines else ""
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 3] + "..."


def _exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'meta' and table_name = 'source_status'"
        ).fetchall()[0][0]
    )


def _record(con: duckdb.DuckDBPyConnection, source: str, status: str, error: str | None) -> None:
    con.execute(
        f"insert or replace into {TABLE} values (?, ?, ?, current_timestamp)",
        [source, status, error],
    )


def mark_ok(con: duckdb.DuckDBPyConnection, source: str) -> None:
    _record(con, source, OK, None)


def mark_stale(con: duckdb.DuckDBPyConnection, source: str, error: BaseException | str) -> str:
    """Record `source` as stale with `error` (one line); returns that line."""
    text = one_line(error)
    _record(con, source, STALE, text)
    return text


def forget(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Drop a source that is no longer configured (e.g. the ERP pull turned off)."""
    con.execute(f"delete from {TABLE} where source = ?", [source])


def statuses(con: duckdb.DuckDBPyConnection) -> list[SourceStatus]:
    """Every recorded source, by name ([] on a warehouse without the table, e.g. read-only)."""
    if not _exists(con):
        return []
    rows = con.execute(f"select source, status, error, run_at from {TABLE} order by 1").fetchall()
    return [SourceStatus(*row) for row in rows]


def stale_sources(con: duckdb.DuckDBPyConnection) -> list[SourceStatus]:
    return [s for s in statuses(con) if s.status == STALE]


def describe(stale: list[SourceStatus]) -> str:
    """`erp_pull (ErpTransientError: ...), shopify_refunds (...)`: for one-line messages."""
    return ", ".join(f"{s.source} ({s.error})" if s.error else s.source for s in stale)
