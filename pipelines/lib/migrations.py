"""Migrations of the state that cannot be rebuilt from raw (DESIGN §12).

`raw` can be landed again and every dbt layer rebuilt from it, but the ledgers (which positions
and files landed), the dead letters, the mismatch lifecycle with its acknowledgements, and the
write-back adjustments with their attempt log are history: losing or rewriting them loses the
audit trail. Their schema changes only here, as numbered migrations:

- `meta.schema_migrations` records each applied version; `migrate()` applies the missing ones in
  order, each in its own transaction with its row, so an interrupted upgrade resumes.
- Migration 1 is the schema as it stood before this module (every statement `if not exists`), so
  an older warehouse opens with its history intact and is simply marked as at version 1.
- A new schema change is a new `Migration` appended to `MIGRATIONS` with the next version; never
  edit one that has shipped. A test opens a warehouse written by the baseline DDL alone and checks
  that its rows survive every migration.

The modules that use these tables (`warehouse`, `filehash`, `erp.pull`, `recon.lifecycle`,
`writeback.schema`) call `migrate()` instead of carrying DDL of their own.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # one or more statements


BASELINE = """
-- ledgers, dead letters, quarantine (pipelines/lib/warehouse.py)
create schema if not exists raw;
create schema if not exists meta;

-- Stream ledger: for each (source, topic, partition) the next offset to read. Written in the
-- same transaction as the raw rows it covers; a restart resumes from here, never from memory.
create table if not exists meta.stream_offsets (
    source      varchar     not null,   -- 'kafka' or 'file'
    topic       varchar     not null,
    "partition" integer     not null,
    next_offset bigint      not null,
    updated_at  timestamptz not null,
    primary key (source, topic, "partition")
);

-- File ledger: one row per landed file (by content hash); a re-dropped file is skipped.
create table if not exists meta.files_landed (
    sha256       varchar     primary key,
    source       varchar     not null,
    path         varchar     not null,
    rows_landed  bigint      not null,
    dead_letters bigint      not null,
    landed_at    timestamptz not null
);

-- Files whose header does not match their contract, kept whole with the reason.
create table if not exists meta.quarantine (
    sha256           varchar     primary key,
    source           varchar     not null,
    path             varchar     not null,
    quarantined_path varchar     not null,
    reason           varchar     not null,
    quarantined_at   timestamptz not null
);

-- Every record that could not be decoded or parsed, with its position and the reason.
-- (source, position) is unique, so replaying a topic or a file never adds a second row.
create table if not exists meta.dead_letters (
    source    varchar     not null,  -- e.g. 'cdc', 'shopify', 'amazon'
    position  varchar     not null,  -- 'topic:partition:offset' or 'sha256:row_number'
    raw       varchar,               -- the record's bytes (utf-8, replaced) or the row's text
    error     varchar     not null,
    failed_at timestamptz not null,
    primary key (source, position)
);

-- the file hash cache (pipelines/lib/filehash.py)
create schema if not exists meta;
create table if not exists meta.file_hashes (
    path      varchar     primary key,  -- absolute path
    size      bigint      not null,
    mtime_ns  bigint      not null,
    inode     ubigint     not null,
    sha256    varchar     not null,
    hashed_at timestamptz not null
);

-- the ERP pull ledger (pipelines/lib/erp/pull.py)
create schema if not exists meta;

-- One row per pulled record version: (model, id, version time). A re-pull lands nothing.
create table if not exists meta.erp_pull_ledger (
    model       varchar     not null,   -- Tryton model, e.g. sale.sale
    record_id   bigint      not null,
    version_at  timestamp   not null,   -- write_date, or create_date if never written (UTC)
    raw_table   varchar     not null,
    "offset"    bigint      not null,   -- the row's _offset in raw.<raw_table> (_partition -1)
    pulled_at   timestamptz not null,
    primary key (model, record_id, version_at)
);

-- Per model, the largest version time pulled so far (the next pull starts there, less overlap).
create table if not exists meta.erp_pull_watermarks (
    model        varchar     primary key,
    watermark    timestamp,
    rows_landed  bigint      not null,   -- total over all pulls
    last_pull_at timestamptz not null
);

-- the mismatch lifecycle (pipelines/lib/recon/lifecycle.py)
create schema if not exists recon;
create table if not exists recon.mismatches (
    mismatch_id     varchar primary key,
    rule            varchar not null,
    severity        varchar not null,
    rma_number      varchar,
    sku             varchar,
    warehouse       varchar,
    location        varchar,
    expected        varchar,
    actual          varchar,
    amount_delta    decimal(18,4),
    qty_delta       decimal(18,3),
    first_seen_at   timestamptz not null,
    last_seen_at    timestamptz not null,
    status          varchar not null,
    resolved_at     timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by varchar
);
-- append-only: one row per status change (opened, resolved, reopened, acknowledged)
create table if not exists recon.mismatch_history (
    mismatch_id varchar not null,
    status      varchar not null,
    changed_at  timestamptz not null,
    changed_by  varchar not null
);

-- write-back (pipelines/lib/writeback/schema.py)
create schema if not exists writeback;
create table if not exists writeback.adjustments (
    adjustment_id   varchar primary key,
    idempotency_key varchar not null unique,
    mismatch_id     varchar not null,
    rule            varchar not null,
    rma_number      varchar,
    sku             varchar,
    action          varchar not null,      -- credit_note | stock_move
    payload         json not null,         -- what the ERP adapter is called with
    amount          decimal(18,4),         -- money credited (credit note) or value moved (stock)
    quantity        decimal(18,3),         -- units credited or moved
    currency        varchar,
    status          varchar not null,      -- planned | approved | rejected | sent | exception
    approved_by     varchar,               -- `auto` or a person; also who rejected
    approved_at     timestamptz,           -- when approved or rejected
    decided_reason  varchar,               -- why (auto limits, a person's reason, obsolete...)
    erp_document    json,                  -- {model, id, number, state} once sent
    in_flight_since timestamptz,           -- a push is (or was, before a crash) working on it
    sent_at         timestamptz,
    created_at      timestamptz not null,
    updated_at      timestamptz not null
);
create table if not exists writeback.attempts (
    adjustment_id varchar not null,
    attempt       integer not null,       -- 1, 2, ... per adjustment across pushes
    "at"          timestamptz not null,  -- quoted: AT is reserved in DuckDB
    outcome       varchar not null,       -- created | found | transient_error | permanent_error
                                          -- | exhausted | auth_error | obsolete | error
    message       varchar,
    primary key (adjustment_id, attempt)
);
create table if not exists writeback.exceptions (
    exception_id  varchar primary key,
    mismatch_id   varchar not null,
    adjustment_id varchar,                -- null: the mismatch has no automatic fix
    rule          varchar not null,
    rma_number    varchar,
    sku           varchar,
    reason        varchar not null,
    message       varchar,                -- the ERP's own message, when it refused
    status        varchar not null,       -- open | closed
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    closed_at     timestamptz,
    closed_reason varchar
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: ledgers, dead letters, file hashes, lifecycle, write-back", BASELINE),
    Migration(
        2,
        "reference file versions by arrival; line accounting of delimited files (DESIGN §12)",
        r"""
        -- One row per arrival of a reference file (pipelines/lib/files/reference.py): a content
        -- that differs from the current version's, even one seen before, becomes current. The
        -- highest version per raw_table is current; staging selects its rows (raw _file_sha256).
        create table if not exists meta.reference_versions (
            raw_table    varchar     not null,  -- sku_crosswalk | warehouse_crosswalk
            version      integer     not null,  -- 1, 2, ... per raw_table in order of arrival
            sha256       varchar     not null,  -- the content; its rows are in raw under it
            arrived_at   timestamptz not null,
            path         varchar     not null,  -- relative to the landing directory
            keys         bigint,                -- distinct keys in it (null: from before counting)
            keys_before  bigint,                -- distinct keys of the version it replaced
            keys_dropped bigint,                -- of those, how many it does not have
            primary key (raw_table, version)
        );
        -- A warehouse from before: every reference file landed becomes a version, in landing
        -- order, so the current one is the newest landed (what staging selected until now).
        insert into meta.reference_versions
        select
            regexp_extract(path, '([^/]+)\.csv$', 1) as raw_table,
            row_number() over (
                partition by regexp_extract(path, '([^/]+)\.csv$', 1) order by landed_at, path
            ) as version,
            sha256, landed_at, path, null, null, null
        from meta.files_landed
        where source = 'reference';

        -- Where every line of a landed CSV/TSV file went (pipelines/lib/files/delimited.py):
        -- lines_read = lines_ignored (header, blank lines) + rows_landed + dead_letters of its
        -- meta.files_landed row. A re-dropped copy is skipped whole: its lines are duplicates.
        create table if not exists meta.file_lines (
            sha256        varchar primary key,
            lines_read    bigint  not null,
            lines_ignored bigint  not null
        );
        """,
    ),
    Migration(
        3,
        "source status: a landing source that failed is stale (DESIGN §12)",
        """
        -- One row per landing source (`cdc`, `erp_pull`, each raw file table): how its last
        -- landing went. `stale` = it failed or was unreachable; that run reconciled without it,
        -- planned nothing and exited 1. Written by pipelines/lib/source_status.py.
        create table if not exists meta.source_status (
            source varchar     primary key,
            status varchar     not null,   -- ok | stale
            error  varchar,                -- one line: why it is stale (null when ok)
            run_at timestamptz not null    -- when this status was recorded
        );
        """,
    ),
    Migration(
        4,
        "acknowledgement notes: why a person acknowledged a mismatch (DESIGN §11)",
        """
        -- The note a person gave with `returnsync acknowledge --note` (null: none given, or the
        -- mismatch is not acknowledged). Written by pipelines/lib/recon/lifecycle.py; the report
        -- shows it as `acknowledgement_note`.
        alter table recon.mismatches add column if not exists acknowledgement_note varchar;
        -- Append-only: every note given, so an unacknowledge or a new note keeps the old one.
        -- (recon.mismatch_history keeps its four columns: the status changes, who and when.)
        create table if not exists recon.acknowledgement_notes (
            mismatch_id varchar     not null,
            noted_at    timestamptz not null,
            noted_by    varchar     not null,
            note        varchar     not null
        );
        """,
    ),
    Migration(
        7,
        "write-back actions: DESIGN §6's ERP-native vocabulary (pipelines/lib/erp/base.py)",
        """
        -- An earlier release planned `stock_move` (an internal shipment into the disposition
        -- location) and `credit_note` (a new credit note). Their rows take today's names; the
        -- idempotency keys stay as they were, so a document sent under one is still found (the
        -- adapter searches internal shipments for a return-shipment key, and credit notes by
        -- reference). Untried rows are superseded by the next planning (new content, new key).
        update writeback.adjustments set action = 'finish_return_shipment'
        where action = 'stock_move';
        update writeback.adjustments set action = 'create_credit_note'
        where action = 'credit_note';
        """,
    ),
)

LEDGER_DDL = """
create schema if not exists meta;
create table if not exists meta.schema_migrations (
    version    integer     primary key,
    name       varchar     not null,
    applied_at timestamptz not null
);
"""

_MIGRATED: weakref.WeakSet = weakref.WeakSet()  # connections already at the latest version


def applied_versions(con: duckdb.DuckDBPyConnection) -> set[int]:
    """The migrations this warehouse has had (none recorded: an empty set)."""
    con.execute(LEDGER_DDL)
    return {v for (v,) in con.execute("select version from meta.schema_migrations").fetchall()}


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest applied migration (0 for a warehouse that has none recorded)."""
    return max(applied_versions(con), default=0)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration the warehouse has not had yet; returns the versions applied.

    Every missing version is applied, in order, even one below the highest applied (a
    development warehouse may have had a later migration first). Cheap after the first call on
    a connection. Inside a caller's open transaction the statements join it; otherwise each
    migration commits on its own, with its ledger row.
    """
    if con in _MIGRATED:
        return []
    done = applied_versions(con)
    applied = []
    joined = False  # applied inside a caller's transaction, which may still roll back
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        own = _begin(con)
        joined = joined or not own
        try:
            con.execute(migration.sql)
            con.execute(
                "insert into meta.schema_migrations values (?, ?, current_timestamp)",
                [migration.version, migration.name],
            )
        except BaseException:
            if own:
                con.execute("rollback")
            raise
        if own:
            con.execute("commit")
        applied.append(migration.version)
    if not joined:
        _MIGRATED.add(con)
    return applied


def _begin(con: duckdb.DuckDBPyConnection) -> bool:
    """Start a transaction unless one is open; True when this call started it."""
    try:
        con.execute("begin transaction")
    except duckdb.TransactionException:
        return False
    return True
