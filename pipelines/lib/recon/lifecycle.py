"""The mismatch lifecycle: `recon.recon_mismatches_current` (dbt) merged into `recon.mismatches`.

dbt rebuilds the current mismatches on every run; this module keeps their history, which dbt must
not own (it would drop and replace the table):

- a mismatch is keyed by its `mismatch_id` (an md5 of the rule and its natural key, computed in
  dbt), so the same data gives the same ids on every run;
- a new mismatch is `open` with `first_seen_at = last_seen_at = as_of`;
- one seen again keeps `first_seen_at`, gets `last_seen_at = as_of` and its latest details; a
  `resolved` one reopens; an `acknowledged` one stays acknowledged;
- one that stops appearing becomes `resolved` with `resolved_at = as_of`; nothing is ever deleted;
- every status change is appended to `recon.mismatch_history` (the audit trail).

The rules, their severities and key shapes come from the rule catalog
(`pipelines.lib.recon.catalog`). Renaming a rule (the catalog's `renamed_from`) or changing its
key shape changes its `mismatch_id`s; before merging, `apply_lifecycle` moves the existing ones
to their new ids (`migrate_rule_ids`), with their history, acknowledgements and write-back rows,
so a renamed rule keeps its audit trail. Idempotent: nothing moves once every id is current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from pipelines.lib.migrations import migrate
from pipelines.lib.recon.catalog import CATALOG, Rule, rules, severities

# Derived from the rule catalog (seeds/rule_catalog.csv), in its order.
RULES: tuple[str, ...] = rules()
SEVERITY: dict[str, str] = severities()
STATUSES: tuple[str, ...] = ("open", "resolved", "acknowledged")
SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}

CURRENT_TABLE = "recon.recon_mismatches_current"
RUN_TABLE = "recon.recon_run"
MISMATCHES_TABLE = "recon.mismatches"
HISTORY_TABLE = "recon.mismatch_history"
NOTES_TABLE = "recon.acknowledgement_notes"  # append-only: every note given (migration 4)

# The columns dbt produces for each current mismatch (DESIGN §5, plus the ERP `location`).
DETAIL_COLUMNS: tuple[str, ...] = (
    "rule",
    "severity",
    "rma_number",
    "sku",
    "warehouse",
    "location",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
)
REPORT_COLUMNS: tuple[str, ...] = (  # the report's columns: DESIGN §5's first, then extras
    "mismatch_id",
    "rule",
    "severity",
    "rma_number",
    "sku",
    "warehouse",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
    "first_seen_at",
    "last_seen_at",
    "status",
    "resolved_at",
    "location",
    "acknowledged_at",
    "acknowledged_by",
    "acknowledgement_note",  # migration 4
)


# The mismatch id as recon_mismatches_current computes it (m: a mismatch row; c: its catalog row
# with the key_shape). Keep the two the same: tests/recon/test_rule_catalog.py checks them against
# the union's unit test.
MISMATCH_ID_SQL = """md5(concat_ws('|', m.rule, coalesce(m.rma_number, ''),
    case when c.key_shape = 'rma' then '' else coalesce(m.sku, '') end,
    case c.key_shape
        when 'rma_sku' then coalesce(m.location, '')
        when 'scanned_rma_sku' then coalesce(m.warehouse, '')
        else ''
    end))"""
# pipelines.lib.writeback.plan's idempotency_key, adjustment_id_for and exception_id_for, in SQL
# (the lifecycle does not import the write-back; tests/recon/test_rule_catalog.py plans again
# after a move and finds nothing to change)
_KEY_SQL = "'returnsync-' || sha256({id} || chr(10) || a.action || chr(10) || a.payload::varchar)"
_EXCEPTION_ID_SQL = "'exc-' || left(sha256('{kind}' || chr(10) || {ref}), 12)"


# the report's order, worst first (columns of recon.mismatches; `m.` before them: REPORT_ORDER_M)
REPORT_ORDER = (
    "case severity when 'high' then 0 when 'medium' then 1 else 2 end, "
    "abs(coalesce(amount_delta, 0)) desc, abs(coalesce(qty_delta, 0)) desc, "
    "rule, rma_number, sku, mismatch_id"
)
REPORT_ORDER_M = (
    "case m.severity when 'high' then 0 when 'medium' then 1 else 2 end, "
    "abs(coalesce(m.amount_delta, 0)) desc, abs(coalesce(m.qty_delta, 0)) desc, "
    "m.rule, m.rma_number, m.sku, m.mismatch_id"
)


@dataclass(frozen=True)
class MergeSummary:
    """What one lifecycle merge did."""

    as_of: datetime
    opened: int  # new mismatches
    reopened: int  # resolved ones that appeared again
    still_open: int  # seen again (open or acknowledged)
    resolved: int  # stopped appearing in this run
    open_total: int  # open + acknowledged after the merge


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create `recon.mismatches` and its history if missing (never replaced)."""
    migrate(con)


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def run_as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The `as_of` of the last dbt recon build (`recon.recon_run`), if there is one."""
    try:
        row = con.execute(f"select max(as_of) from {RUN_TABLE}").fetchone()
    except duckdb.CatalogException:
        return None
    return _as_utc(row[0]) if row and row[0] is not None else None


def _move_ids(con: duckdb.DuckDBPyConnection, catalog: tuple[Rule, ...]) -> int:
    """Rename rules and move mismatch ids to the catalog's key shapes (inside the caller's
    transaction); returns how many mismatches got a new id.

    A renamed rule's mismatches (and their write-back rows) take the new name and severity. Then
    every mismatch whose id is not the one its rule's key shape gives moves to that id: its
    history, adjustments and exceptions follow. An adjustment that never reached the ERP (no
    attempt, not in flight, not sent) also gets the idempotency key and id the planner would now
    give it, so a person's approval survives a new key shape (a rename changes the document's
    description, which names the rule, so planning replaces those as for any changed mismatch);
    one that reached the ERP keeps its key (the ERP document carries it). Two mismatches that a
    coarser key shape makes one are merged: the status and acknowledgement of the acknowledged
    (else open, else resolved) one, first/last seen spanning both, both histories.
    """
    for r in catalog:
        if r.renamed_from:
            con.execute(
                f"update {MISMATCHES_TABLE} set rule = ?, severity = ? where rule = ?",
                [r.rule, r.severity, r.renamed_from],
            )
            for table in ("writeback.adjustments", "writeback.exceptions"):
                con.execute(f"update {table} set rule = ? where rule = ?", [r.rule, r.renamed_from])
    con.execute("create or replace temp table _rule_shapes (rule varchar, key_shape varchar)")
    con.executemany(
        "insert into _rule_shapes values (?, ?)", [(r.rule, r.key_shape) for r in catalog]
    )
    con.execute(
        f"""
        create or replace temp table _id_moves as
        select m.mismatch_id as old_id, {MISMATCH_ID_SQL} as new_id
        from {MISMATCHES_TABLE} m join _rule_shapes c using (rule)
        where {MISMATCH_ID_SQL} <> m.mismatch_id
        """
    )
    moved = con.execute("select count(*) from _id_moves").fetchone()[0]
    if moved:
        _merge_moved(con)
    con.execute("drop table _id_moves")
    con.execute("drop table _rule_shapes")
    return int(moved)


def _merge_moved(con: duckdb.DuckDBPyConnection) -> None:
    # each new id's members: the moved rows and a row that already has that id
    con.execute(
        f"""
        create or replace temp table _members as
        select new_id, old_id as member, false as in_place from _id_moves
        union all
        select m.mismatch_id, m.mismatch_id, true from {MISMATCHES_TABLE} m
        where m.mismatch_id in (select new_id from _id_moves)
          and m.mismatch_id not in (select old_id from _id_moves)
        """
    )
    # the row that stays: one already in place, else the best moved one; its status and
    # acknowledgement are the best member's
    con.execute(
        f"""
        create or replace temp table _kept as
        with ranked as (
            select g.new_id, g.member, g.in_place, m.status, m.resolved_at, m.acknowledged_at,
                m.acknowledged_by, m.acknowledgement_note, m.first_seen_at, m.last_seen_at,
                row_number() over (partition by g.new_id order by
                    case m.status when 'acknowledged' then 0 when 'open' then 1 else 2 end,
                    m.first_seen_at, g.member) as best,
                row_number() over (partition by g.new_id order by g.in_place desc,
                    case m.status when 'acknowledged' then 0 when 'open' then 1 else 2 end,
                    m.first_seen_at, g.member) as place,
                min(m.first_seen_at) over (partition by g.new_id) as first_seen,
                max(m.last_seen_at) over (partition by g.new_id) as last_seen
            from _members g join {MISMATCHES_TABLE} m on m.mismatch_id = g.member
        )
        select p.new_id, p.member, b.status, b.resolved_at, b.acknowledged_at,
            b.acknowledged_by, b.acknowledgement_note, p.first_seen, p.last_seen
        from ranked p join ranked b on b.new_id = p.new_id and b.best = 1
        where p.place = 1
        """
    )
    con.execute(
        f"""
        delete from {MISMATCHES_TABLE} where mismatch_id in (
            select member from _members where member not in (select member from _kept))
        """
    )
    con.execute(
        f"""
        update {MISMATCHES_TABLE} m set status = k.status,
            resolved_at = k.resolved_at, acknowledged_at = k.acknowledged_at,
            acknowledged_by = k.acknowledged_by,
            acknowledgement_note = k.acknowledgement_note, first_seen_at = k.first_seen,
            last_seen_at = k.last_seen
        from _kept k where m.mismatch_id = k.member
        """
    )
    con.execute(
        f"""
        update {MISMATCHES_TABLE} m set mismatch_id = k.new_id
        from _kept k where m.mismatch_id = k.member and k.member <> k.new_id
        """
    )
    con.execute(
        f"""
        update {HISTORY_TABLE} h set mismatch_id = g.new_id
        from _members g where h.mismatch_id = g.member and not g.in_place
        """
    )
    con.execute(
        f"""
        update {NOTES_TABLE} n set mismatch_id = g.new_id
        from _members g where n.mismatch_id = g.member and not g.in_place
        """
    )
    _follow_in_writeback(con)
    con.execute("drop table _members")
    con.execute("drop table _kept")


def _follow_in_writeback(con: duckdb.DuckDBPyConnection) -> None:
    # adjustments that never reached the ERP: the key and id the planner now computes
    con.execute(
        f"""
        create or replace temp table _adjustment_moves as
        select a.adjustment_id as old_adjustment,
            'adj-' || left(sha256(g.new_id || chr(10) || a.action || chr(10)
                || a.payload::varchar), 12) as new_adjustment,
            {_KEY_SQL.format(id="g.new_id")} as new_key
        from writeback.adjustments a join _id_moves g on a.mismatch_id = g.old_id
        where a.in_flight_since is null and a.sent_at is null
          and not exists (
              select 1 from writeback.attempts t where t.adjustment_id = a.adjustment_id)
        """
    )
    con.execute(
        """
        update writeback.adjustments a set adjustment_id = v.new_adjustment,
            idempotency_key = v.new_key
        from _adjustment_moves v where a.adjustment_id = v.old_adjustment
        """
    )
    con.execute(
        f"""
        update writeback.exceptions e set adjustment_id = v.new_adjustment,
            exception_id = {_EXCEPTION_ID_SQL.format(kind="adjustment", ref="v.new_adjustment")}
        from _adjustment_moves v where e.adjustment_id = v.old_adjustment
        """
    )
    con.execute(
        """
        update writeback.adjustments a set mismatch_id = g.new_id
        from _id_moves g where a.mismatch_id = g.old_id
        """
    )
    # a planning exception (no adjustment) is keyed by its mismatch: one per new id keeps it,
    # any other of the same new id is closed as merged
    con.execute(
        f"""
        create or replace temp table _exception_moves as
        select e.exception_id as old_exception, g.new_id,
            {_EXCEPTION_ID_SQL.format(kind="mismatch", ref="g.new_id")} as new_exception,
            row_number() over (partition by g.new_id
                order by e.status = 'open' desc, e.created_at, e.exception_id) as n
        from writeback.exceptions e join _id_moves g on e.mismatch_id = g.old_id
        where e.adjustment_id is null
          and e.exception_id = {_EXCEPTION_ID_SQL.format(kind="mismatch", ref="g.old_id")}
        """
    )
    con.execute(
        """
        update writeback.exceptions e set exception_id = v.new_exception
        from _exception_moves v
        where e.exception_id = v.old_exception and v.n = 1
          and v.new_exception not in (select exception_id from writeback.exceptions)
        """
    )
    con.execute(
        """
        update writeback.exceptions e set status = 'closed',
            closed_at = coalesce(e.closed_at, e.updated_at),
            closed_reason = coalesce(e.closed_reason, 'merged into ' || v.new_exception)
        from _exception_moves v where e.exception_id = v.old_exception
        """
    )
    con.execute(
        """
        update writeback.exceptions e set mismatch_id = g.new_id
        from _id_moves g where e.mismatch_id = g.old_id
        """
    )
    con.execute("drop table _adjustment_moves")
    con.execute("drop table _exception_moves")


def migrate_rule_ids(con: duckdb.DuckDBPyConnection, catalog: tuple[Rule, ...] = CATALOG) -> int:
    """Apply the catalog's renames and key shapes to the stored mismatches in one transaction
    (see `_move_ids`); returns how many mismatches got a new id. `apply_lifecycle` does this
    first on every run."""
    ensure_tables(con)
    con.execute("begin transaction")
    try:
        moved = _move_ids(con, catalog)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return moved


def apply_lifecycle(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime | str | None = None,
    current_table: str = CURRENT_TABLE,
    catalog: tuple[Rule, ...] = CATALOG,
) -> MergeSummary:
    """Merge the current mismatches into `recon.mismatches` in one transaction.

    `as_of` defaults to the `as_of` dbt used (`recon.recon_run`), so the lifecycle and the rules
    agree on the run's time. Raises `LookupError` when the current table does not exist. In the
    same transaction, first moves stored mismatches of renamed or re-keyed rules to their new ids
    (`migrate_rule_ids`).
    """
    ensure_tables(con)
    when = _as_utc(as_of) if as_of is not None else run_as_of(con)
    if when is None:
        raise LookupError(f"{RUN_TABLE} is missing: build the dbt recon models first")
    schema, table = current_table.split(".")
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()[0]
    if not exists:
        raise LookupError(f"{current_table} is missing: build the dbt recon models first")

    details = ", ".join(DETAIL_COLUMNS)
    set_details = ", ".join(f"{c} = c.{c}" for c in DETAIL_COLUMNS)
    con.execute("begin transaction")
    try:
        _move_ids(con, catalog)
        con.execute(
            f"create or replace temp table _recon_current as "
            f"select distinct on (mismatch_id) mismatch_id, {details} from {current_table} "
            f"order by mismatch_id"
        )
        counts = con.execute(
            f"""
            select
                count(*) filter (where m.mismatch_id is null),
                count(*) filter (where m.status = 'resolved'),
                count(*) filter (where m.status in ('open', 'acknowledged'))
            from _recon_current c left join {MISMATCHES_TABLE} m using (mismatch_id)
            """
        ).fetchone()
        opened, reopened, still_open = (int(x or 0) for x in counts)
        # history first, while the old statuses are still there
        con.execute(
            f"""
            insert into {HISTORY_TABLE}
            select c.mismatch_id, 'open', ?, 'recon'
            from _recon_current c left join {MISMATCHES_TABLE} m using (mismatch_id)
            where m.mismatch_id is null or m.status = 'resolved'
            """,
            [when],
        )
        con.execute(
            f"""
            insert into {HISTORY_TABLE}
            select m.mismatch_id, 'resolved', ?, 'recon'
            from {MISMATCHES_TABLE} m anti join _recon_current c using (mismatch_id)
            where m.status in ('open', 'acknowledged')
            """,
            [when],
        )
        resolved = con.execute(
            f"""
            update {MISMATCHES_TABLE} m set status = 'resolved', resolved_at = ?
            where m.status in ('open', 'acknowledged')
              and m.mismatch_id not in (select mismatch_id from _recon_current)
            """,
            [when],
        ).fetchone()[0]
        con.execute(
            f"""
            update {MISMATCHES_TABLE} m set {set_details}, last_seen_at = ?,
                status = case when m.status = 'acknowledged' then 'acknowledged' else 'open' end,
                resolved_at = null
            from _recon_current c where m.mismatch_id = c.mismatch_id
            """,
            [when],
        )
        con.execute(
            f"""
            insert into {MISMATCHES_TABLE}
                (mismatch_id, {details}, first_seen_at, last_seen_at, status)
            select c.mismatch_id, {", ".join(f"c.{d}" for d in DETAIL_COLUMNS)}, ?, ?, 'open'
            from _recon_current c anti join {MISMATCHES_TABLE} m using (mismatch_id)
            """,
            [when, when],
        )
        open_total = con.execute(
            f"select count(*) from {MISMATCHES_TABLE} where status in ('open', 'acknowledged')"
        ).fetchone()[0]
        con.execute("drop table _recon_current")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return MergeSummary(
        as_of=when,
        opened=opened,
        reopened=reopened,
        still_open=still_open,
        resolved=int(resolved or 0),
        open_total=int(open_total),
    )


@dataclass
class AckOutcome:
    """What one acknowledge or unacknowledge did, id by id (in the order given)."""

    changed: list[str] = field(default_factory=list)  # acknowledged / unacknowledged now
    noted: list[str] = field(default_factory=list)  # already acknowledged: the new note stored
    unchanged: list[str] = field(default_factory=list)  # already so: nothing to do
    resolved: list[str] = field(default_factory=list)  # resolved: nothing to acknowledge
    unknown: list[str] = field(default_factory=list)  # no mismatch with that id


def _clean(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    text = " ".join(str(text).split())
    if not text:
        raise ValueError(f"{what} is empty")
    return text


def set_acknowledged(
    con: duckdb.DuckDBPyConnection,
    mismatch_ids: list[str] | tuple[str, ...],
    by: str,
    note: str | None = None,
    at: datetime | None = None,
) -> AckOutcome:
    """Acknowledge open mismatches by a person, with an optional note, in one transaction.

    An acknowledged mismatch stays so across reruns while it keeps appearing. Idempotent: one
    already acknowledged is left as it was (`unchanged`), except that a different note replaces
    its note (`noted`; who and when stay the first acknowledgement's). Every note given is also
    appended to `recon.acknowledgement_notes`, every status change to the history. Resolved and
    unknown ids change nothing.
    """
    who = _clean(by, "who acknowledges (by)")
    if who is None:
        raise ValueError("acknowledge needs the name of who acknowledges (by)")
    text = _clean(note, "the note")
    ensure_tables(con)
    when = _as_utc(at) if at is not None else datetime.now(UTC)
    outcome = AckOutcome()
    con.execute("begin transaction")
    try:
        for mismatch_id in dict.fromkeys(mismatch_ids):
            row = con.execute(
                f"select status, acknowledgement_note from {MISMATCHES_TABLE} "
                "where mismatch_id = ?",
                [mismatch_id],
            ).fetchone()
            if row is None:
                outcome.unknown.append(mismatch_id)
                continue
            status, old_note = row
            if status == "resolved":
                outcome.resolved.append(mismatch_id)
                continue
            if status == "acknowledged":
                if text is None or text == old_note:
                    outcome.unchanged.append(mismatch_id)
                    continue
                con.execute(
                    f"update {MISMATCHES_TABLE} set acknowledgement_note = ? where mismatch_id = ?",
                    [text, mismatch_id],
                )
                outcome.noted.append(mismatch_id)
            else:
                con.execute(
                    f"""
                    update {MISMATCHES_TABLE}
                    set status = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?,
                        acknowledgement_note = ?
                    where mismatch_id = ?
                    """,
                    [when, who, text, mismatch_id],
                )
                con.execute(
                    f"insert into {HISTORY_TABLE} (mismatch_id, status, changed_at, changed_by) "
                    "values (?, 'acknowledged', ?, ?)",
                    [mismatch_id, when, who],
                )
                outcome.changed.append(mismatch_id)
            if text is not None:
                con.execute(
                    f"insert into {NOTES_TABLE} (mismatch_id, noted_at, noted_by, note) "
                    "values (?, ?, ?, ?)",
                    [mismatch_id, when, who, text],
                )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return outcome


def unacknowledge(
    con: duckdb.DuckDBPyConnection,
    mismatch_ids: list[str] | tuple[str, ...],
    by: str,
    at: datetime | None = None,
) -> AckOutcome:
    """Take acknowledgements back: the mismatches are `open` again (and fail their checks).

    Who and when the acknowledgement was, and its note, are cleared from the mismatch; the
    history gets an `unacknowledged` row by `by`, and `recon.acknowledgement_notes` keeps every
    note. Idempotent: an open one is `unchanged`; resolved and unknown ids change nothing.
    """
    who = _clean(by, "who unacknowledges (by)")
    if who is None:
        raise ValueError("unacknowledge needs the name of who does it (by)")
    ensure_tables(con)
    when = _as_utc(at) if at is not None else datetime.now(UTC)
    outcome = AckOutcome()
    con.execute("begin transaction")
    try:
        for mismatch_id in dict.fromkeys(mismatch_ids):
            row = con.execute(
                f"select status from {MISMATCHES_TABLE} where mismatch_id = ?", [mismatch_id]
            ).fetchone()
            if row is None:
                outcome.unknown.append(mismatch_id)
            elif row[0] == "resolved":
                outcome.resolved.append(mismatch_id)
            elif row[0] == "open":
                outcome.unchanged.append(mismatch_id)
            else:
                con.execute(
                    f"""
                    update {MISMATCHES_TABLE}
                    set status = 'open', acknowledged_at = null, acknowledged_by = null,
                        acknowledgement_note = null
                    where mismatch_id = ?
                    """,
                    [mismatch_id],
                )
                con.execute(
                    f"insert into {HISTORY_TABLE} (mismatch_id, status, changed_at, changed_by) "
                    "values (?, 'unacknowledged', ?, ?)",
                    [mismatch_id, when, who],
                )
                outcome.changed.append(mismatch_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return outcome


def acknowledge(
    con: duckdb.DuckDBPyConnection,
    mismatch_id: str,
    by: str,
    at: datetime | None = None,
    note: str | None = None,
) -> bool:
    """Mark an open mismatch acknowledged by a person (see `set_acknowledged`).

    Returns False when there is no open mismatch with that id (resolved ones cannot be
    acknowledged; an acknowledged one is left as it was, unless `note` gives it a new note).
    """
    if not by or not by.strip():
        raise ValueError("acknowledge needs the name of who acknowledges (by)")
    return bool(set_acknowledged(con, [mismatch_id], by=by, note=note, at=at).changed)


def list_mismatches(
    con: duckdb.DuckDBPyConnection,
    status: str = "open",
    rule: str | None = None,
    only: str | None = None,
) -> list[dict]:
    """Mismatches as dicts with `REPORT_COLUMNS`, worst first (severity, then money, then qty).

    `status` is one of `STATUSES` or `all`; `only` names a table whose `mismatch_id`s are the
    only ones listed (the report's cache recomputes some cases). Raises `LookupError` when the
    table is missing.
    """
    if status != "all" and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)} or all")
    if rule is not None and rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: use one of {', '.join(RULES)}")
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'recon' and table_name = 'mismatches'"
    ).fetchone()[0]
    if not exists:
        raise LookupError(f"{MISMATCHES_TABLE} is missing: run the reconciliation first")
    where, params = [], []
    if status != "all":
        where.append("status = ?")
        params.append(status)
    if rule is not None:
        where.append("rule = ?")
        params.append(rule)
    if only is not None:
        where.append(f"mismatch_id in (select mismatch_id from {only})")
    clause = f"where {' and '.join(where)}" if where else ""
    cursor = con.execute(
        f"""
        select {", ".join(REPORT_COLUMNS)} from {MISMATCHES_TABLE} {clause}
        order by {REPORT_ORDER}
        """,
        params,
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
