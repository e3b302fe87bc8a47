"""`returnsync acknowledge --note` / `unacknowledge` on a real warehouse (DESIGN §5, §11):
notes are stored (migration 4), repeating an action exits 0 and says so, nothing is lost."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.errors import EXIT_FAILED, EXIT_USAGE
from pipelines.lib.migrations import BASELINE
from pipelines.lib.recon.lifecycle import apply_lifecycle, list_mismatches
from tests.recon.recon_helpers import mismatch, publish

T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 2, tzinfo=UTC)
NO_CREDIT = mismatch("refund_without_credit", "LR-2", expected="50", actual="0", amount_delta=-50)
STALE = mismatch("stale_return", "LR-3")
GONE = mismatch("stale_return", "LR-4")


@pytest.fixture
def warehouse(tmp_path):
    """Two open mismatches and one resolved, as the lifecycle leaves them after two runs."""
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("set timezone = 'UTC'")
    publish(con, T1, [NO_CREDIT, STALE, GONE])
    apply_lifecycle(con)
    publish(con, T2, [NO_CREDIT, STALE])
    apply_lifecycle(con)
    con.close()
    return path


def cli(*args):
    return CliRunner().invoke(main, list(args), prog_name="returnsync")


def rows(path) -> dict[str, dict]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {r["mismatch_id"]: r for r in list_mismatches(con, "all")}


def query(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_acknowledge_stores_the_note_and_a_second_time_exits_0_saying_so(warehouse):
    nid = NO_CREDIT["mismatch_id"]
    first = cli(
        "acknowledge", nid, "--by", "ana", "--note", "credit issued by hand", "--db", warehouse
    )
    assert first.exit_code == 0, first.output
    assert "acknowledged 1 mismatch(es) by ana" in first.output
    row = rows(warehouse)[nid]
    assert (row["status"], row["acknowledged_by"], row["acknowledgement_note"]) == (
        "acknowledged",
        "ana",
        "credit issued by hand",
    )
    when = row["acknowledged_at"]

    again = cli("acknowledge", nid, "--by", "bob", "--db", warehouse)
    assert again.exit_code == 0, again.output
    assert f"already acknowledged: {nid}" in again.output
    row = rows(warehouse)[nid]  # who, when and the note stay the first acknowledgement's
    assert (row["acknowledged_by"], row["acknowledged_at"], row["acknowledgement_note"]) == (
        "ana",
        when,
        "credit issued by hand",
    )

    renote = cli("acknowledge", nid, "--by", "bob", "--note", "credit CN-7", "--db", warehouse)
    assert renote.exit_code == 0, renote.output
    assert "note replaced" in renote.output
    assert rows(warehouse)[nid]["acknowledgement_note"] == "credit CN-7"
    assert query(
        warehouse, "select noted_by, note from recon.acknowledgement_notes order by noted_at"
    ) == [("ana", "credit issued by hand"), ("bob", "credit CN-7")]
    history = query(
        warehouse,
        f"select status, changed_by from recon.mismatch_history where mismatch_id = '{nid}' "
        "order by changed_at",
    )
    assert history == [("open", "recon"), ("acknowledged", "ana")]  # one acknowledgement


def test_unacknowledge_reopens_and_keeps_the_notes(warehouse):
    nid, sid = NO_CREDIT["mismatch_id"], STALE["mismatch_id"]
    done = cli("acknowledge", nid, sid, "--by", "ana", "--note", "known", "--db", warehouse)
    assert done.exit_code == 0, done.output
    assert "acknowledged 2 mismatch(es)" in done.output

    back = cli("unacknowledge", nid, "--by", "lead", "--db", warehouse)
    assert back.exit_code == 0, back.output
    assert "unacknowledged 1 mismatch(es) by lead" in back.output
    after = rows(warehouse)
    assert (after[nid]["status"], after[nid]["acknowledged_by"]) == ("open", None)
    assert after[nid]["acknowledgement_note"] is None
    assert after[sid]["status"] == "acknowledged"  # only the one named
    assert query(warehouse, "select count(*) from recon.acknowledgement_notes") == [(2,)]
    assert query(
        warehouse,
        f"select status, changed_by from recon.mismatch_history where mismatch_id = '{nid}' "
        "order by changed_at",
    ) == [("open", "recon"), ("acknowledged", "ana"), ("unacknowledged", "lead")]

    twice = cli("unacknowledge", nid, "--by", "lead", "--db", warehouse)
    assert twice.exit_code == 0, twice.output
    assert f"not acknowledged: {nid}" in twice.output

    # the next run leaves it open and keeps the other acknowledged
    with duckdb.connect(str(warehouse)) as con:
        publish(con, datetime(2026, 3, 3, tzinfo=UTC), [NO_CREDIT, STALE])
        apply_lifecycle(con)
    after = rows(warehouse)
    assert (after[nid]["status"], after[sid]["status"]) == ("open", "acknowledged")
    assert after[sid]["acknowledgement_note"] == "known"


def test_resolved_and_unknown_ids_exit_1_after_the_others_are_done(warehouse):
    nid, gid = NO_CREDIT["mismatch_id"], GONE["mismatch_id"]
    result = cli("acknowledge", nid, gid, "no-such-id", "--by", "ana", "--db", warehouse)
    assert result.exit_code == EXIT_FAILED, result.output
    assert rows(warehouse)[nid]["status"] == "acknowledged"
    assert rows(warehouse)[gid]["status"] == "resolved"
    assert gid in result.output and "no-such-id" in result.output
    undo = cli("unacknowledge", "no-such-id", "--by", "ana", "--db", warehouse)
    assert undo.exit_code == EXIT_FAILED, undo.output
    empty = cli("acknowledge", nid, "--by", "ana", "--note", "  ", "--db", warehouse)
    assert empty.exit_code == EXIT_USAGE, empty.output


def test_an_older_warehouse_gets_the_note_column_and_keeps_its_acknowledgements(tmp_path):
    """Migration 4 on a warehouse written before it: the old acknowledgement is kept, without a
    note, and can be taken back."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(BASELINE)
        con.execute(
            "insert into recon.mismatches (mismatch_id, rule, severity, rma_number, "
            "first_seen_at, last_seen_at, status, acknowledged_at, acknowledged_by) values "
            "('m1', 'stale_return', 'low', 'LR-1', '2026-10-01', '2026-11-01', 'acknowledged', "
            "'2026-11-02', 'alice')"
        )
    listed = cli("unacknowledge", "m1", "--by", "bob", "--db", path)
    assert listed.exit_code == 0, listed.output
    assert query(path, "select status, acknowledgement_note from recon.mismatches") == [
        ("open", None)
    ]
    assert query(path, "select max(version) >= 4 from meta.schema_migrations") == [(True,)]
