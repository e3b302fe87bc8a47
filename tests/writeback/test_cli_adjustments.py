"""`returnsync approve | reject | push --dry-run` (no ERP needed)."""

from __future__ import annotations

from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.warehouse import connection
from pipelines.lib.writeback import plan_adjustments
from tests.writeback.helpers import (
    ReturnSpec,
    add_mismatch,
    add_return,
    adjustments,
    make_warehouse,
)


def _planned(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb")
    with connection(db) as con:
        add_return(con, ReturnSpec("RMA-1", "P-1001", 9001, 9101, 11))
        add_return(con, ReturnSpec("RMA-2", "P-1002", 9002, 9102, 11))
        small = add_mismatch(
            con, "receipt_not_posted", "RMA-1", "P-1001", location="WH-E-STO", qty_delta="-1"
        )
        big = add_mismatch(
            con, "receipt_not_posted", "RMA-2", "P-1002", location="WH-E-SCR", qty_delta="-25"
        )
        plan_adjustments(con)
        rows = adjustments(con)
    return db, rows[small]["adjustment_id"], rows[big]["adjustment_id"]


def test_approve_reject_and_dry_run(tmp_path):
    db, small, big = _planned(tmp_path)
    runner = CliRunner()
    dry = runner.invoke(main, ["push", "--dry-run", "--db", str(db)])
    assert dry.exit_code == 0, dry.output
    assert f"would send {small}" in dry.output and f"would send {big}" not in dry.output
    assert f"waiting for approval: {big} receipt_not_posted RMA RMA-2" in dry.output
    assert "nothing sent" in dry.output

    approved = runner.invoke(main, ["approve", big, "--by", "alice", "--db", str(db)])
    assert approved.exit_code == 0 and f"{big} approved by alice" in approved.output
    dry = runner.invoke(main, ["push", "--dry-run", "--db", str(db)])
    assert big in dry.output and "2 adjustment(s) would be sent" in dry.output

    rejected = runner.invoke(
        main, ["reject", small, "--by", "bob", "--reason", "posted by hand", "--db", str(db)]
    )
    assert rejected.exit_code == 0
    again = runner.invoke(main, ["approve", small, "--by", "alice", "--db", str(db)])
    assert again.exit_code != 0 and "is rejected" in again.output
    unknown = runner.invoke(main, ["reject", "adj-000000000000", "--by", "bob", "--db", str(db)])
    assert unknown.exit_code != 0 and "no adjustment" in unknown.output
    with connection(db, read_only=True) as con:
        statuses = {
            r["adjustment_id"]: (r["status"], r["approved_by"], r["decided_reason"])
            for r in adjustments(con).values()
        }
    assert statuses[small] == ("rejected", "bob", "posted by hand")
    assert statuses[big][:2] == ("approved", "alice")
    # a dry run wrote nothing: no attempts
    with connection(db, read_only=True) as con:
        assert con.execute("select count(*) from writeback.attempts").fetchone()[0] == 0


def test_commands_have_help():
    for name in ("approve", "reject", "push"):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "--db" in result.output
