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
whose columns or types changed, or where most rows changed, is written whole.
Only the rows the build can have changed are compared where that is exact (`_Scope`): the
published file records the state of the warehouse's incremental models it was made from
(`main.published.models_state`, with its as_of and `seeds_state`), and the build records the
state it started from (the comment of `intermediate.int_returns_touched`). When they match (no
build ran since the publish but this one: not two builds, nor a failed one before it, nor a model
built by hand) and the build's scope is not full, each incremental model's table
(`SCOPED_TABLES`: the marts and rule models keyed by the touched returns, receipts,
inspections and refunds, as their pre-hooks delete and insert) is compared only on the rows of
that scope, both sides; the tables whose post-hooks refresh an as_of column on every row (stage
latencies; the rules' `detected_at`) only when as_of and the seeds did not move. Every other
table (rebuilt whole by every build, or written outside dbt: the mismatch lifecycle,
acknowledgements, write-back documents) and every table when in doubt is compared in full;
`PublishResult.compared` says which, and why. Freshness reads
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

import hashlib
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
    # how each table of an incremental publish was compared ("schema.table" -> "touched rows"
    # or why every row was compared); see `_Scope`
    compared: dict[str, str] = field(default_factory=dict)


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


def publish(
    warehouse: Path, target: Path, *, incremental: bool = True, scoped: bool = True
) -> PublishResult:
    """Copy the published schemas of `warehouse` into `target`, replacing it atomically.

    The published file records when it was published and the run's `as_of` (from
    `recon.recon_run`, the one reconciliation time of the build). `incremental` (the default)
    starts from the published file and writes only what changed (see the module doc);
    `incremental=False` writes everything into an empty file. `scoped=False` compares every row
    of every table even where the build's scope says which rows can differ (`_Scope`; for
    measuring).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    result = PublishResult(path=target, published_at=datetime.now(UTC))
    result.removed_leftovers = [p.name for p in remove_leftovers(target)]
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    _remove(staging)
    previous: dict = {}
    con = _start_from_published(target, staging, previous) if incremental else None
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
        as_of = _run_as_of(con, tables)
        state = (_models_state(con), _seeds_state(con))
        scope = None
        if result.incremental:
            scope = (
                _Scope.decide(con, previous, as_of, state)
                if scoped
                else _Scope(*(["not asked to (scoped=False)"] * 3))
            )
        kept: set[tuple[str, str]] = set()
        for schema, table in tables:
            columns = _publishable_columns(con, schema, table, result)
            if not columns:
                continue
            source = _Source(f'warehouse.{schema}."{table}"', [(c, f'"{c}"') for c in columns])
            where = scope.condition(schema, table, columns, result) if scope else "true"
            _write_table(con, schema, table, source, published, result, scope=where)
            kept.add((schema, table))
        if _publish_writeback_documents(con, published, result):
            kept.add(("recon", WRITEBACK_DOCUMENTS))
            if scope:
                result.compared[f"recon.{WRITEBACK_DOCUMENTS}"] = (
                    "every row: written by planning and push, outside the build"
                )
        if scope:
            scope.drop(con)
        for schema, table in published:  # no longer published (or written anew below)
            if (schema, table) not in kept:
                con.execute(f'drop table {schema}."{table}"')
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
            "select ?::timestamptz as published_at, ?::varchar as as_of, ?::varchar as tables, "
            "?::varchar as models_state, ?::varchar as seeds_state",
            [result.published_at, as_of, ", ".join(result.tables), *state],
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


def _start_from_published(target: Path, staging: Path, previous: dict):
    """A read-write connection to a copy of the published file, or None when there is none
    usable (missing, unreadable, not a published file, too much free space). `previous` gets
    the published file's `main.published` row (as_of, the warehouse state it was made from)."""
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
        row = con.execute("select * from main.published").fetchone()
        if row is not None:
            names = [d[0] for d in con.description]
            previous.update(zip(names, row, strict=True))
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
    scope: str = "true",
) -> None:
    """`schema.table` of the staging file made equal to the rows of `source`: only the
    differing rows written when the staging file has the table with the same columns and types;
    written whole otherwise. Records the table's rows. `scope`: a condition on the published
    columns outside which both sides are known to be equal (`_Scope`): only the rows inside it
    are compared."""
    name = f'{schema}."{table}"'
    key = f"{schema}.{table}"
    old = published.get((schema, table))
    if old is not None:
        new = con.execute(f"describe {source.sql()}").fetchall()
        if [(r[0], r[1]) for r in new] == old:
            written = _apply_difference(con, name, source, scope)
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


def _apply_difference(
    con, name: str, source: _Source, scope: str = "true"
) -> tuple[int, int] | None:
    """Delete from `name` the rows whose hash differs from `source`'s (gone, new, or another
    count of the same row) and insert `source`'s rows of those hashes; returns (deleted,
    inserted), or None when most rows changed (the caller writes the table whole). Only the
    rows of both sides that satisfy `scope` are compared (`{relation}` in it: the side's table).

    Each side is read and hashed once (row ids kept beside the hashes); the deletes and the
    inserts then pick their rows by row id."""
    new_hash = "hash(" + ", ".join(expr for _, expr in source.exprs) + ")"
    old_hash = "hash(" + ", ".join(f'"{c}"' for c, _ in source.exprs) + ")"
    con.execute(
        f"create or replace temp table _publish_new as select rowid as r, {new_hash} as h "
        f"from {source.relation} where ({source.where}) "
        f"and ({scope.replace('{relation}', source.relation)})"
    )
    con.execute(
        f"create or replace temp table _publish_old as select rowid as r, {old_hash} as h "
        f"from {name} where {scope.replace('{relation}', name)}"
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
        total = con.execute(f"select count(*) from {name}").fetchone()[0]
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


# The state of the warehouse's incremental models: the fingerprint of `_incremental_state` (one
# row per incremental model: its watermark, seeds' fingerprint and recording time, rewritten by
# every model built) that `int_returns_touched` records as its table comment when a build
# computes its scope (dbt_project/models/intermediate/returns/int_returns_touched.sql, its
# post-hook): the same SQL.
_MODELS_STATE_SQL = """
    select md5(coalesce(string_agg(concat(
        model, chr(124), coalesce(cast(epoch_us(watermark_at) as varchar), chr(0)),
        chr(124), coalesce(fingerprint, chr(0)),
        chr(124), coalesce(cast(epoch_us(recorded_at) as varchar), chr(0))
    ), chr(44) order by model), chr(0)))
    from warehouse.intermediate._incremental_state
"""


def _has_table(con, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where database_name = 'warehouse' "
            "and schema_name = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def _columns(con, schema: str, table: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "select column_name from duckdb_columns() where database_name = 'warehouse' "
            "and schema_name = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }


def _models_state(con) -> str | None:
    """The attached warehouse's incremental-model state (see `_MODELS_STATE_SQL`), or None."""
    if not _has_table(con, "intermediate", "_incremental_state"):
        return None
    return con.execute(_MODELS_STATE_SQL).fetchone()[0]


def _seeds_state(con) -> str | None:
    """A fingerprint of every table of the attached warehouse's `seeds` schema (the settings the
    as_of post-hooks read), or None without seeds."""
    tables = con.execute(
        "select table_name from duckdb_tables() where database_name = 'warehouse' "
        "and schema_name = 'seeds' order by 1"
    ).fetchall()
    if not tables:
        return None
    parts = []
    for (table,) in tables:
        digest = con.execute(
            "select md5(coalesce(string_agg(t::varchar, '|' order by t::varchar), '')) "
            f'from warehouse.seeds."{table}" as t'
        ).fetchone()[0]
        parts.append(f"{table}:{digest}")
    return hashlib.md5(",".join(parts).encode()).hexdigest()


# The rows a build of the incremental models deletes and inserts, by published table: the
# condition of each model's pre-hook (`delete_touched_scope` with its `in_touched` keys, in
# dbt_project/macros/returns_incremental.sql; `delete_recon_scope` in recon_incremental.sql),
# written on the published columns against the build's scope (temp tables `_publish_touched`:
# intermediate.int_returns_touched; `_publish_recon_touched`: recon.recon_touched's returns).
# `needs`: "marts" (the build's scope), "as_of" (also a post-hook that refreshes every row when
# the run's as_of or the settings seed moves: marts.return_stage_latencies), "recon" (the rule
# models: recon_touched's returns, and `detected_at` refreshed on every row when as_of moves).
# tests/analyst/test_incremental_publish.py checks this table against the dbt manifest.
_RETURN = "return_key in (select key from _publish_touched where kind = 'return')"
# (normalize_rma of dbt_project/macros/cdc_current_state.sql, applied to each distinct RMA number
# of the side's table (`{relation}`) rather than to every row: the same rows, a quarter cheaper)
_RMA = (
    "rma_number in (select rma from (select distinct rma_number as rma from {relation}) "
    "where nullif(upper(regexp_replace(coalesce(rma, ''), '[^A-Za-z0-9]', '', 'g')), '') "
    "in (select rma_normalized from _publish_touched where kind = 'return'))"
)
_RECEIPT = "receipt_id in (select cast(key as bigint) from _publish_touched where kind = 'receipt')"
_INSPECTION = (
    "inspection_id in (select cast(key as bigint) from _publish_touched where kind = 'inspection')"
)
_REFUND = (
    "try_cast(external_id as bigint) in "
    "(select cast(key as bigint) from _publish_touched where kind = 'refund')"
)
_RULE = "return_key in (select return_key from _publish_recon_touched)"


@dataclass(frozen=True)
class _Scoped:
    condition: str
    columns: tuple[str, ...]  # the published columns the condition reads
    needs: str  # "marts", "as_of" or "recon"


SCOPED_TABLES: dict[tuple[str, str], _Scoped] = {
    ("marts", "returns"): _Scoped(_RETURN, ("return_key",), "marts"),
    ("marts", "return_lines"): _Scoped(_RETURN, ("return_key",), "marts"),
    ("marts", "receipts"): _Scoped(_RECEIPT, ("receipt_id",), "marts"),
    ("marts", "dispositions"): _Scoped(
        f"{_RECEIPT} or {_INSPECTION}", ("receipt_id", "inspection_id"), "marts"
    ),
    ("marts", "credits"): _Scoped(
        f"{_RETURN} or (return_key is null and system = 'shopify' and {_REFUND})",
        ("return_key", "system", "external_id"),
        "marts",
    ),
    ("marts", "inventory_adjustments"): _Scoped(_RETURN, ("return_key",), "marts"),
    ("marts", "return_events"): _Scoped(_RETURN, ("return_key",), "marts"),
    ("marts", "return_stage_latencies"): _Scoped(_RETURN, ("return_key",), "as_of"),
    ("recon", "recon_return_money"): _Scoped(_RMA, ("rma_number",), "marts"),
    ("recon", "recon_line_money"): _Scoped(_RMA, ("rma_number",), "marts"),
    ("recon", "recon_stock_mismatches"): _Scoped(_RULE, ("return_key",), "recon"),
    ("recon", "recon_credit_mismatches"): _Scoped(_RULE, ("return_key",), "recon"),
    ("recon", "recon_duplicate_credits"): _Scoped(_RULE, ("return_key",), "recon"),
    ("recon", "recon_return_mismatches"): _Scoped(_RULE, ("return_key",), "recon"),
}


@dataclass
class _Scope:
    """Which rows of an incremental publish can differ from the published copy.

    The published file records the state of the warehouse's incremental models it was made from
    (`main.published.models_state`), its as_of and its seeds. When the build now in the warehouse
    started from exactly that state (`int_returns_touched`'s comment: no model was built in
    between, so no build ran without a publish after it) and did not recompute everything, each
    incremental model changed only the rows of that build's scope (its pre-hook deletes them, its
    insert writes them), so only those rows are compared; with the same as_of and seeds, the
    post-hooks that refresh as_of columns changed no other row either. Anything else (the copy
    made from another state, a full scope, as_of or a seed moved, a table not built that way:
    rebuilt whole, or written outside dbt like `recon.mismatches` and acknowledgements) is
    compared in full, and `PublishResult.compared` says why.
    """

    marts: str | None  # why the build's scope cannot be used (None: it can)
    as_of: str | None  # why the as_of-refreshed tables are compared in full
    recon: str | None  # why the rule models are compared in full

    @classmethod
    def decide(cls, con, previous: dict, as_of: str | None, state: tuple) -> _Scope:
        marts = cls._marts(con, previous, state[0])
        moved = None
        if previous.get("as_of") != as_of:
            moved = f"as_of moved ({previous.get('as_of')} -> {as_of}): every row refreshed"
        elif previous.get("seeds_state") != state[1]:
            moved = "a seed changed: every row's settings refreshed"
        recon = marts or moved
        if recon is None:
            if not _has_table(con, "recon", "recon_touched"):
                recon = "no rule scope (recon.recon_touched)"
            else:
                full = con.execute(
                    "select min(reason) from warehouse.recon.recon_touched where kind = 'full'"
                ).fetchone()[0]
                if full is not None:
                    recon = f"the rules were recomputed in full ({full})"
        if recon is None:
            con.execute(
                "create or replace temp table _publish_recon_touched as select distinct "
                "return_key from warehouse.recon.recon_touched where kind = 'return'"
            )
        return cls(marts=marts, as_of=marts or moved, recon=recon)

    @staticmethod
    def _marts(con, previous: dict, state: str | None) -> str | None:
        if previous.get("models_state") is None or state is None:
            return "the published copy records no warehouse state to start from"
        started = con.execute(
            "select comment from duckdb_tables() where database_name = 'warehouse' "
            "and schema_name = 'intermediate' and table_name = 'int_returns_touched'"
        ).fetchone()
        if not started or not started[0]:
            return "no build scope (intermediate.int_returns_touched, its comment the state)"
        if started[0] != previous["models_state"]:
            return (
                "the build did not start from the published state (another build, or a "
                "model built by hand, since the last publish)"
            )
        full = con.execute(
            "select min(reason) from warehouse.intermediate.int_returns_touched where kind = 'full'"
        ).fetchone()[0]
        if full is not None:
            return f"the build recomputed every row ({full})"
        con.execute(
            "create or replace temp table _publish_touched as select kind, key, rma_normalized "
            "from warehouse.intermediate.int_returns_touched"
        )
        return None

    def condition(self, schema: str, table: str, columns: list[str], result: PublishResult) -> str:
        """The scope condition of `schema.table` ("true": every row), recorded in `result`."""
        key = f"{schema}.{table}"
        scoped = SCOPED_TABLES.get((schema, table))
        if scoped is None:
            why = "rebuilt whole by every build, or written outside dbt"
        elif not set(scoped.columns) <= set(columns):
            why = "a column of its scope is not published"
        else:
            why = {"marts": self.marts, "as_of": self.as_of, "recon": self.recon}[scoped.needs]
        if why is not None:
            result.compared[key] = f"every row: {why}"
            return "true"
        result.compared[key] = "the build's touched rows"
        return scoped.condition

    def drop(self, con) -> None:
        con.execute("drop table if exists _publish_touched")
        con.execute("drop table if exists _publish_recon_touched")


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
