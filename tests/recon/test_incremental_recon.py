"""The incremental reconciliation equals a full one, lifecycle included (issue 24).

The rule models recompute only the returns in `recon.recon_touched`: the ones the new raw rows
touched and the ones *due* (a grace window ending between the last build's as_of and this one's).
The session's simulated landscape is landed again in out-of-order thirds (as
tests/dbt/test_incremental_marts.py does, which proves the marts equal a full refresh), each
built incrementally at an as_of that moves forward and back, then one build with no new rows at a
later as_of (only time passes). After every build, a copy of the warehouse rebuilds the recon
models with `--full-refresh` from the same marts: every rule table and the current mismatches
must hold the same rows. Each side runs the lifecycle at the same as_of, the full side on its
own history: the mismatches (status, first/last seen, resolved) and their history must be equal.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.lib import warehouse
from pipelines.lib.recon.lifecycle import apply_lifecycle
from tests.dbt.cli import dbt
from tests.dbt.test_incremental_marts import BATCHES, land_batch

RULE_TABLES = (
    "recon.recon_stock_mismatches",
    "recon.recon_credit_mismatches",
    "recon.recon_duplicate_credits",
    "recon.recon_return_mismatches",
    "recon.recon_unmatched_receipts",
    "recon.recon_mismatches_current",
)
LIFECYCLE_TABLES = ("recon.mismatches", "recon.mismatch_history")
# one build per batch, as_of going forward and back; then one with nothing new, a month on
AS_OF = ("2026-10-01T00:00:00Z", "2026-10-20T00:00:00Z", "2026-10-12T00:00:00Z")
LATER = "2026-11-20T00:00:00Z"


# what the rules read, and every model of the marts' watermark set (return_events,
# return_stage_latencies and the report's money facts are not under the rules; without them every
# build would be full)
INCREMENTAL = ("--select", "+recon_mismatches_current", "+recon_touched", "+return_events",
               "+return_stage_latencies", "+recon_return_money", "+recon_line_money")  # fmt: skip
RULES_ONLY = ("--select", "path:models/recon", "--exclude", "adjustment_candidates+",
              "path:models/recon/report")  # fmt: skip


def build(db: Path, work: Path, as_of: str, *extra: str) -> None:
    dbt(db, work, "build", "--resource-type", "seed", "--resource-type", "model",
        "--vars", json.dumps({"as_of": as_of}), *extra)  # fmt: skip


def only_in(db: Path, other: Path, tables: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    """Per table: (rows, rows only in db, rows only in other), as multisets."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(f"attach '{other}' as other (read_only)")
        for table in tables:
            rows = con.execute(f"select count(*) from {table}").fetchone()[0]
            here = f"select count(*) from (from {table} except all from other.{table})"
            there = f"select count(*) from (from other.{table} except all from {table})"
            out[table] = (rows, con.execute(here).fetchone()[0], con.execute(there).fetchone()[0])
    return out


def scope(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(
            con.execute(
                "select case kind when 'full' then 'full' else reason end, count(*) "
                "from recon.recon_touched group by 1"
            ).fetchall()
        )


def lifecycle(db: Path, as_of: str):
    with warehouse.connection(db) as con:
        return apply_lifecycle(con, as_of=as_of)


def full_side(inc: Path, history: Path | None, work: Path, as_of: str, step: int) -> Path:
    """A copy of the incremental warehouse with the recon models rebuilt in full and the full
    side's own lifecycle history (none before the first step) merged at the same as_of."""
    full = work / f"full-{step}.duckdb"
    shutil.copy(inc, full)
    build(full, work, as_of, *RULES_ONLY, "--full-refresh")
    with warehouse.connection(full) as con:
        if history is None:
            con.execute("delete from recon.mismatch_history")
            con.execute("delete from recon.mismatches")
        else:
            con.execute(f"attach '{history}' as prev (read_only)")
            for table in LIFECYCLE_TABLES:
                con.execute(f"delete from {table}")
                con.execute(f"insert into {table} from prev.{table}")
            con.execute("detach prev")
        apply_lifecycle(con, as_of=as_of)
    return full


@pytest.mark.timeout(1500)  # seven dbt builds (~40 s each on an idle machine)
def test_incremental_recon_equals_full_with_its_lifecycle(simulated_run, tmp_path):
    source = simulated_run.settings.db_path
    inc = tmp_path / "incremental.duckdb"
    warehouse.initialize(inc)
    history = None
    steps = [(batch, AS_OF[batch]) for batch in range(BATCHES)] + [(None, LATER)]
    changed_by_time = None
    for step, (batch, as_of) in enumerate(steps):
        if batch is not None:
            assert land_batch(inc, source, batch) > 0
        build(inc, tmp_path, as_of, *INCREMENTAL)
        summary = lifecycle(inc, as_of)
        touched = scope(inc)
        if step == 0:
            assert "full" in touched, touched  # the first build computes every return
        else:
            assert "full" not in touched and sum(touched.values()) > 0, touched
        if batch is None:  # nothing landed: only the due returns, and time changed the result
            assert set(touched) == {"due"}, touched
            changed_by_time = summary.opened + summary.resolved
        full = full_side(inc, history, tmp_path, as_of, step)
        diff = only_in(inc, full, RULE_TABLES + LIFECYCLE_TABLES)
        assert all(here == there == 0 for _, here, there in diff.values()), (step, diff)
        assert diff["recon.recon_mismatches_current"][0] > 0
        if history is not None:
            history.unlink()
        history = full
    assert changed_by_time, "the later as_of opened or resolved nothing: the test proves nothing"
    assert diff["recon.mismatch_history"][0] > diff["recon.mismatches"][0]  # some resolved
