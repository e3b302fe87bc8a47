"""Publish the marts to a read-only analyst database, atomically.

DuckDB allows one writer per file, and a reader that opens the warehouse while a run writes gets a
lock error. Analysts never open the warehouse: after every successful build the marts and the
reconciliation tables are copied into a new DuckDB file that is then renamed over the published
one (`os.replace`, atomic on POSIX). A reader that has the old file open keeps reading the old
version, a new connection sees the new one, and neither ever blocks a run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

PUBLISHED_SCHEMAS = ("marts", "recon")

# Reports and the published marts never carry personal data (DESIGN §5). The marts should not
# have such columns at all; this is the last guard, and what it keeps back is reported.
# (`order_name` `#1001` or Amazon's `item_name` are not personal; `customer_name` is.)
PERSONAL_DATA_COLUMN = re.compile(
    r"^name$|(^|_)(customer|party|first|last|full|contact)_name($|_)"
    r"|(^|_)(e_?mail|phone|address|street|postcode|zip_code|payload)($|_)"
)


@dataclass
class PublishResult:
    path: Path
    tables: dict[str, int] = field(default_factory=dict)  # "schema.table" -> rows
    withheld_columns: list[str] = field(default_factory=list)  # "schema.table.column"
    published_at: datetime | None = None


def publish(warehouse: Path, target: Path) -> PublishResult:
    """Copy the published schemas of `warehouse` into `target`, replacing it atomically.

    The published file records when it was published and the run's `as_of` (from
    `recon.recon_run`, the one reconciliation time of the build).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.unlink(missing_ok=True)
    result = PublishResult(path=target, published_at=datetime.now(UTC))
    con = duckdb.connect(str(staging))
    try:
        con.execute("attach ? as warehouse (read_only)", [str(warehouse)])
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = 'warehouse' and schema_name in ? order by 1, 2",
            [list(PUBLISHED_SCHEMAS)],
        ).fetchall()
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"create schema if not exists {schema}")
        for schema, table in tables:
            columns = _publishable_columns(con, schema, table, result)
            select = ", ".join(f'"{c}"' for c in columns)
            con.execute(
                f'create table {schema}."{table}" as '
                f'select {select} from warehouse.{schema}."{table}"'
            )
            result.tables[f"{schema}.{table}"] = con.execute(
                f'select count(*) from {schema}."{table}"'
            ).fetchone()[0]
        as_of = _run_as_of(con, tables)
        con.execute("detach warehouse")
        con.execute(
            "create table main.published as "
            "select ?::timestamptz as published_at, ?::varchar as as_of, ?::varchar as tables",
            [result.published_at, as_of, ", ".join(result.tables)],
        )
        con.execute("checkpoint")
    except BaseException:
        con.close()
        staging.unlink(missing_ok=True)
        raise
    con.close()
    staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
    os.replace(staging, target)
    return result


def _run_as_of(con, tables: list[tuple[str, str]]) -> str | None:
    if ("recon", "recon_run") not in tables:
        return None
    row = con.execute("select as_of from warehouse.recon.recon_run").fetchone()
    return row[0].isoformat() if row and row[0] else None


def _publishable_columns(con, schema: str, table: str, result: PublishResult) -> list[str]:
    names = [
        r[0]
        for r in con.execute(
            "select column_name from duckdb_columns() where database_name = 'warehouse' "
            "and schema_name = ? and table_name = ? order by column_index",
            [schema, table],
        ).fetchall()
    ]
    kept = []
    for name in names:
        if PERSONAL_DATA_COLUMN.search(name.lower()):
            result.withheld_columns.append(f"{schema}.{table}.{name}")
        else:
            kept.append(name)
    return kept
