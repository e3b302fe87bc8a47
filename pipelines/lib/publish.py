"""Publish the marts to a read-only analyst database, atomically.

DuckDB allows one writer per file, and a reader that opens the warehouse while a run writes gets a
lock error. Analysts never open the warehouse: after every successful build the marts and the
reconciliation tables are copied into a new DuckDB file that is then renamed over the published
one (`os.replace`, atomic on POSIX). A reader that has the old file open keeps reading the old
version, a new connection sees the new one, and neither ever blocks a run.

What is published (DESIGN §12: no raw or personal data, free text only as its mapped code):
- Only the tables of the `marts` and `recon` schemas, plus `main.published`; nothing of `raw`,
  `staging`, `intermediate`, `meta`, `ledger` or any other schema.
- Withheld as personal data (`PERSONAL_DATA_COLUMN`, the last guard; the marts have none today):
  names, e-mail, phone, address and payload columns.
- Withheld as free text (`FREE_TEXT_COLUMN`), decided per column of today's marts and recon:
  - `marts.return_lines.reason_raw`: the return reason as the customer or channel gave it (Shopify
    and the returns SaaS let the customer type it). Published as `reason`, the code mapped by the
    `reason_map` seed (unknown reasons are `other`).
  - `marts.dispositions.disposition_raw`: the WMS's own disposition text, published as the mapped
    `disposition`.
  - any `*_raw`, `note(s)`, `comment(s)`, `message`, `memo`, `remark(s)` or `free_text` column a
    later model adds (an acknowledgement note, for instance).
  Kept after review: `recon.mismatches.expected`/`actual` (quantities, amounts, currency codes or
  fixed words the rules write), `sku`/`channel_sku`/`lot`/`serial`/`tracking_number`/`order_ref`/
  `rma_number*` (identifiers, not prose), `channel_status` (a channel's status code),
  `acknowledged_by`/`changed_by` (the user name of the person or process that acted, which finance
  needs for the audit trail; DESIGN §11). The raw values stay in the warehouse.

Write-back documents (`recon.writeback_documents`, derived from the warehouse's
`writeback.adjustments`; the `writeback` schema itself is not published): one row per adjustment
that is sent or still to be sent (status `planned`, `approved` or `sent`; rejected ones and those
in the exception queue are left out), with `adjustment_id`, `mismatch_id`, `rma_number`, `sku`,
`action`, `status`, the ERP document's `erp_model`, `erp_document_id` and `erp_document_number`
(from the `erp_document` JSON; null until sent), `sent_at`, `created_at` and `updated_at`. No
payload (it names ERP parties), no amounts, no ERP messages, no reasons or notes (free text); the
columns pass the same personal-data and free-text guards as every other. A warehouse without
`writeback.adjustments` publishes no such table (every warehouse `pipelines.lib.warehouse.connect`
opened has one, from the migrations: there it is published, empty until the first planning).
`returnsync trace` shows the sent ones in a return's timeline.

Freshness (`meta.freshness`, the one table of the `meta` schema that is published): per raw
source table, the rows landed, the time the newest landed and its position (`topic:partition:
offset` for change streams, `sha256:row` for files), so an analyst sees how current each source
is. `freshness` computes it from any connection where the warehouse is attached (or open);
`returnsync report` prints the same rows in its header (`freshness_lines`).

Incremental (issue 24): a publish starts from a copy of the published file (a byte copy, no
decompression) and changes only what differs. Per table, the rows are compared as multisets by a
hash of all published columns (`hash(row)`, vectorized in DuckDB, both sides): the rows whose
hash is gone or new, or whose count changed, are deleted from and inserted into the copy; a table
with no difference is not written at all (its storage blocks stay the published file's), one
whose columns or types changed, or where most rows changed, is written whole. Freshness reads
only the raw rows landed since the published `meta.freshness` (raw tables are append-only, DESIGN
§3: the same row count means nothing landed; the newest landed row is among those at or after
the last published time). The result is the same tables, columns, types and rows as a publish
from scratch (tests/analyst/test_incremental_publish.py), still switched in by `os.replace`.
There is no previous file, or it cannot be read, or a third of its blocks are free (rows deleted
by earlier publishes): the publish starts from an empty file, as it always did before.

A publish killed half-way leaves `.<name>.<pid>.tmp` (and `.tmp.wal`) beside the target;
`remove_leftovers` (run at the start of every publish) deletes those whose process is gone or that
are more than an hour old.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.lib.processes import is_running

PUBLISHED_SCHEMAS = ("marts", "recon")
# internal tables of those schemas that analysts never see: the write-back planner's input holds
# ERP party ids and is not an analysis table (DESIGN §6); the acknowledgement notes' log is free
# text a person typed, with who typed it (the report shows the current note to finance)
UNPUBLISHED_TABLES = frozenset(
    {("recon", "adjustment_candidates"), ("recon", "acknowledgement_notes")}
)

# Reports and the published marts never carry personal data (DESIGN §5). The marts should not
# have such columns at all; this is the last guard, and what it keeps back is reported.
# (`order_name` `#1001` or Amazon's `item_name` are not personal; `customer_name` is.)
PERSONAL_DATA_COLUMN = re.compile(
    r"^name$|(^|_)(customer|party|first|last|full|contact)_name($|_)"
    r"|(^|_)(e_?mail|phone|address|street|postcode|zip_code|payload)($|_)"
)


# Free text a person typed, and raw values that have a mapped code beside them (see above).
FREE_TEXT_COLUMN = re.compile(
    r"(^|_)raw$|(^|_)(notes?|comments?|message|memo|remarks?|free_text)($|_)"
)

# a staging file of `publish` (or its WAL / spill directory): `.<target name>.<pid>.tmp[.wal]`
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp(?:\.wal|\.tmp)?$")
LEFTOVER_MAX_AGE_S = 3600


@dataclass
class PublishResult:
    path: Path
    tables: dict[str, int] = field(default_factory=dict)  # "schema.table" -> rows
    withheld_columns: list[str] = field(default_factory=list)  # personal data: schema.table.col
    free_text_columns: list[str] = field(default_factory=list)  # published as their mapped code
    removed_leftovers: list[str] = field(default_factory=list)  # of interrupted publishes
    published_at: datetime | None = None
    incremental: bool = False  # started from the published file (only differences written)
    # rows deleted and inserted per table ("schema.table" -> (deleted, inserted)); a table
    # written whole counts its old rows as deleted; a table left as it was is not listed
    written: dict[str, tuple[int, int]] = field(default_factory=dict)


def remove_leftovers(target: Path, max_age_s: float = LEFTOVER_MAX_AGE_S) -> list[Path]:
    """Delete the staging files an interrupted publish of `target` left behind: those whose
    process is no longer alive, or that are older than `max_age_s` (a reused pid). A publish in
    progress in another live process keeps its files. Returns what was removed."""
    removed: list[Path] = []
    try:
        candidates = list(target.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in candidates:
        match = _STAGING.match(path.name)
        if not match or match["name"] != target.name:
            continue
        pid = int(match["pid"])
        try:
            age = now - path.lstat().st_mtime
        except OSError:
            continue
        if age <= max_age_s and (pid == os.getpid() or is_running(pid)):
            continue  # a publish in progress (this process's own, in another thread, included)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def publish(warehouse: Path, target: Path, *, incremental: bool = True) -> PublishResult:
    """Copy the published schemas of `warehouse` into `target`, replacing it atomically.

    The published file records when it was published and the run's `as_of` (from
    `recon.recon_run`, the one reconciliation time of the build). `incremental` (the default)
    starts from the published file and writes only what changed (see the module doc);
    `incremental=False` writes everything into an empty file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    result = PublishResult(path=target, published_at=datetime.now(UTC))
    result.removed_leftovers = [p.name for p in remove_leftovers(target)]
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    _remove(staging)
    con = _start_from_published(target, staging) if incremental else None
    result.incremental = con is not None
    if con is None:
        con = duckdb.connect(str(staging))
    try:
        from pipelines.lib.warehouse import wait_for_lock  # waits while another process holds it

        wait_for_lock(
            lambda: con.execute("attach ? as warehouse (read_only)", [str(warehouse)]), warehouse
        )
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = 'warehouse' and schema_name in ? order by 1, 2",
            [list(PUBLISHED_SCHEMAS)],
        ).fetchall()
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"create schema if not exists {schema}")
        tables = [t for t in tables if tuple(t) not in UNPUBLISHED_TABLES]
        published = _published_tables(con)
        kept: set[tuple[str, str]] = set()
        for schema, table in tables:
            columns = _publishable_columns(con, schema, table, result)
            if not columns:
                continue
            source = _Source(f'warehouse.{schema}."{table}"', [(c, f'"{c}"') for c in columns])
            _write_table(con, schema, table, source, published, result)
            kept.add((schema, table))
        if _publish_writeback_documents(con, published, result):
            kept.add(("recon", WRITEBACK_DOCUMENTS))
        for schema, table in published:  # no longer published (or written anew below)
            if (schema, table) not in kept:
                con.execute(f'drop table {schema}."{table}"')
        as_of = _run_as_of(con, tables)
        fresh = freshness(con, "warehouse", previous=_previous_freshness(con))
        con.execute("detach warehouse")
        if fresh:  # a warehouse with raw tables (every real one: `initialize` creates them)
            con.execute("create schema if not exists meta")
            con.execute(
                "create table meta.freshness (source varchar, rows_landed bigint, "
                "last_landed_at timestamptz, last_position varchar)"
            )
            con.executemany("insert into meta.freshness values (?, ?, ?, ?)", fresh)
        else:  # as from scratch: no `meta` schema (the previous file's freshness is dropped)
            con.execute("drop schema if exists meta")
        con.execute(
            "create table main.published as "
            "select ?::timestamptz as published_at, ?::varchar as as_of, ?::varchar as tables",
            [result.published_at, as_of, ", ".join(result.tables)],
        )
        con.execute("checkpoint")
    except BaseException:
        con.close()
        _remove(staging)
        raise
    con.close()
    staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
    os.replace(staging, target)
    return result


def _remove(staging: Path) -> None:
    staging.unlink(missing_ok=True)
    staging.with_name(staging.name + ".wal").unlink(missing_ok=True)


# start from an empty file when more than this share of the published file's blocks is free
MAX_FREE_SHARE = 1 / 3
# a table where more than this share of the rows changed is written whole
MAX_CHANGED_SHARE = 0.5


def _start_from_published(target: Path, staging: Path):
    """A read-write connection to a copy of the published file, or None when there is none
    usable (missing, unreadable, not a published file, too much free space)."""
    if not target.is_file() or target.is_symlink():
        return None
    try:
        shutil.copyfile(target, staging)
        con = duckdb.connect(str(staging))
    except (OSError, duckdb.Error):
        _remove(staging)
        return None
    try:
        marker = con.execute(
            "select count(*) from duckdb_tables() where database_name = current_database() "
            "and schema_name = 'main' and table_name = 'published'"
        ).fetchone()[0]
        total, free = con.execute(
            "select total_blocks, free_blocks from pragma_database_size()"
        ).fetchone()
        if not marker or (total and free / total > MAX_FREE_SHARE):
            raise LookupError("start from an empty file")
        con.execute("drop table main.published")
        if con.execute(
            "select count(*) from duckdb_tables() where database_name = current_database() "
            "and schema_name = 'meta' and table_name = 'freshness'"
        ).fetchone()[0]:
            # kept (as a temp copy) for `freshness`: the rows landed since are all it reads
            con.execute("create temp table _published_freshness as from meta.freshness")
            con.execute("drop table meta.freshness")
    except (LookupError, duckdb.Error):
        con.close()
        _remove(staging)
        return None
    return con


def _published_tables(con) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The tables of the staging file (the previous publish's): (schema, table) -> its columns
    as (name, type), in order."""
    rows = con.execute(
        "select schema_name, table_name, column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and not internal "
        "and schema_name <> 'main' and schema_name <> 'meta' order by schema_name, table_name, "
        "column_index"
    ).fetchall()
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, data_type in rows:
        out.setdefault((schema, table), []).append((column, data_type))
    return out


@dataclass
class _Source:
    """What one published table holds: `exprs` ((column name, expression) pairs) of the rows of
    `relation` (a warehouse table) that match `where`."""

    relation: str
    exprs: list[tuple[str, str]]
    where: str = "true"
    order: str = ""

    def sql(self, extra: str = "true") -> str:
        select = ", ".join(f'{expr} as "{name}"' for name, expr in self.exprs)
        order = f" order by {self.order}" if self.order else ""
        return f"select {select} from {self.relation} where ({self.where}) and {extra}{order}"


def _write_table(
    con,
    schema: str,
    table: str,
    source: _Source,
    published: dict[tuple[str, str], list[tuple[str, str]]],
    result: PublishResult,
) -> None:
    """`schema.table` of the staging file made equal to the rows of `source`: only the
    differing rows written when the staging file has the table with the same columns and types;
    written whole otherwise. Records the table's rows."""
    name = f'{schema}."{table}"'
    key = f"{schema}.{table}"
    old = published.get((schema, table))
    if old is not None:
        new = con.execute(f"describe {source.sql()}").fetchall()
        if [(r[0], r[1]) for r in new] == old:
            written = _apply_difference(con, name, source)
            if written is not None:
                if written != (0, 0):
                    result.written[key] = written
                result.tables[key] = con.execute(f"select count(*) from {name}").fetchone()[0]
                return
        deleted = con.execute(f"select count(*) from {name}").fetchone()[0]
        con.execute(f"drop table {name}")
    else:
        deleted = 0
    con.execute(f"create table {name} as {source.sql()}")
    rows = con.execute(f"select count(*) from {name}").fetchone()[0]
    result.tables[key] = rows
    result.written[key] = (deleted, rows)


def _apply_difference(con, name: str, source: _Source) -> tuple[int, int] | None:
    """Delete from `name` the rows whose hash differs from `source`'s (gone, new, or another
    count of the same row) and insert `source`'s rows of those hashes; returns (deleted,
    inserted), or None when most rows changed (the caller writes the table whole).

    Each side is read and hashed once (row ids kept beside the hashes); the deletes and the
    inserts then pick their rows by row id."""
    new_hash = "hash(" + ", ".join(expr for _, expr in source.exprs) + ")"
    old_hash = "hash(" + ", ".join(f'"{c}"' for c, _ in source.exprs) + ")"
    con.execute(
        f"create or replace temp table _publish_new as select rowid as r, {new_hash} as h "
        f"from {source.relation} where {source.where}"
    )
    con.execute(
        f"create or replace temp table _publish_old as select rowid as r, {old_hash} as h "
        f"from {name}"
    )
    try:
        con.execute(
            """
            create or replace temp table _publish_changed as
            with new as (select h, count(*) as n from _publish_new group by 1),
                 old as (select h, count(*) as n from _publish_old group by 1)
            select h, coalesce(new.n, 0) as new_rows, coalesce(old.n, 0) as old_rows
            from new full join old using (h)
            where new.n is distinct from old.n
            """
        )
        inserted, deleted = con.execute(
            "select coalesce(sum(new_rows), 0), coalesce(sum(old_rows), 0) from _publish_changed"
        ).fetchone()
        total = con.execute("select count(*) from _publish_old").fetchone()[0]
        if not inserted and not deleted:
            return 0, 0
        if inserted + deleted > MAX_CHANGED_SHARE * max(total, 1):
            return None
        if deleted:
            con.execute(
                f"delete from {name} where rowid in (select r from _publish_old where h in "
                "(select h from _publish_changed where old_rows > 0))"
            )
        if inserted:
            rows = (
                "rowid in (select r from _publish_new where h in "
                "(select h from _publish_changed where new_rows > 0))"
            )
            con.execute(f"insert into {name} {source.sql(rows)}")
        return int(deleted), int(inserted)
    finally:
        con.execute("drop table if exists _publish_changed")
        con.execute("drop table _publish_new")
        con.execute("drop table _publish_old")


def _previous_freshness(con) -> dict[str, tuple] | None:
    """The previous publish's `meta.freshness` rows by source (kept by
    `_start_from_published`), or None."""
    try:
        rows = con.execute("select * from _published_freshness").fetchall()
    except duckdb.CatalogException:
        return None
    con.execute("drop table _published_freshness")
    return {r[0]: tuple(r) for r in rows}


# the position columns of a raw table, by its kind (pipelines/lib/contracts.py): newest first
_POSITIONS = (
    ("_offset", "_topic || ':' || _partition || ':' || _offset", "_offset"),
    ("_row_number", "_file_sha256 || ':' || _row_number", "_row_number"),
)


def freshness(
    con, database: str | None = None, previous: dict[str, tuple] | None = None
) -> list[tuple]:
    """(source, rows landed, last landed at, last position) per raw table, sorted by source.

    `database` is the attached warehouse's name (None: the connection's own database). The
    last position is the one of the row landed last (ties: the highest offset or row).
    `previous`: the rows of an earlier call by source; raw tables are append-only, so a table
    with the same row count gives its earlier row, and otherwise only its rows landed at or
    after the earlier time are read (the newest is among them)."""
    where = "database_name = ?" if database else "database_name = current_database()"
    params = [database] if database else []
    tables = con.execute(
        f"select table_name from duckdb_tables() where {where} and schema_name = 'raw' "
        "order by table_name",
        params,
    ).fetchall()
    prefix = f'"{database}".' if database else ""
    rows = []
    for (table,) in tables:
        columns = {
            r[0]
            for r in con.execute(
                f"select column_name from duckdb_columns() where {where} and schema_name = 'raw' "
                "and table_name = ?",
                [*params, table],
            ).fetchall()
        }
        if "_ingested_at" not in columns:
            continue
        position, order = "null", "0"
        for marker, expr, tie in _POSITIONS:
            if marker in columns:
                position, order = expr, tie
                break
        select = (
            f"select ?, count(*), max(_ingested_at), "
            f"arg_max({position}, (_ingested_at, {order}))::varchar "
            f'from {prefix}raw."{table}"'
        )
        before = (previous or {}).get(table)
        if before is not None and before[2] is not None:
            landed = con.execute(f'select count(*) from {prefix}raw."{table}"').fetchone()[0]
            if landed == before[1]:
                rows.append((table, landed, before[2], before[3]))
                continue
            since = con.execute(f"{select} where _ingested_at >= ?", [table, before[2]])
            _, _, at, last = since.fetchone()
            if at is not None:  # the newest row is among those (none: read them all)
                rows.append((table, landed, at, last))
                continue
        rows.append(con.execute(select, [table]).fetchone())
    return rows


def freshness_lines(rows: list[tuple]) -> list[str]:
    """The freshness rows as the report's header lines (sources that landed nothing say so)."""
    lines = []
    for source, landed, at, position in rows:
        if not landed:
            lines.append(f"freshness: {source}: nothing landed")
        else:
            when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "?"
            lines.append(f"freshness: {source}: {landed} rows, last {when} UTC at {position}")
    return lines


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
        elif FREE_TEXT_COLUMN.search(name.lower()):
            result.free_text_columns.append(f"{schema}.{table}.{name}")
        else:
            kept.append(name)
    return kept


# `recon.writeback_documents` (see the module doc): the ERP documents `push` sent, or will send
WRITEBACK_DOCUMENTS = "writeback_documents"
WRITEBACK_STATUSES = ("planned", "approved", "sent")
_WRITEBACK_COLUMNS = (
    ("adjustment_id", "adjustment_id"),
    ("mismatch_id", "mismatch_id"),
    ("rma_number", "rma_number"),
    ("sku", "sku"),
    ("action", "action"),
    ("status", "status"),
    ("erp_model", "json_extract_string(erp_document, '$.model')"),
    ("erp_document_id", "json_extract_string(erp_document, '$.id')"),
    ("erp_document_number", "json_extract_string(erp_document, '$.number')"),
    ("sent_at", "sent_at"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
)


def _publish_writeback_documents(con, published, result: PublishResult) -> bool:
    """`recon.writeback_documents` from the attached warehouse's `writeback.adjustments`, if
    any (True when published)."""
    has = con.execute(
        "select count(*) from duckdb_tables() where database_name = 'warehouse' "
        "and schema_name = 'writeback' and table_name = 'adjustments'"
    ).fetchone()[0]
    if not has:
        return False
    for name, _ in _WRITEBACK_COLUMNS:  # the same last guards as every published column
        if PERSONAL_DATA_COLUMN.search(name) or FREE_TEXT_COLUMN.search(name):
            raise AssertionError(f"recon.{WRITEBACK_DOCUMENTS}.{name} must not be published")
    statuses = ", ".join(f"'{s}'" for s in WRITEBACK_STATUSES)
    source = _Source(
        "warehouse.writeback.adjustments",
        list(_WRITEBACK_COLUMNS),
        where=f"status in ({statuses})",
        order="created_at, adjustment_id",
    )
    _write_table(con, "recon", WRITEBACK_DOCUMENTS, source, published, result)
    return True
