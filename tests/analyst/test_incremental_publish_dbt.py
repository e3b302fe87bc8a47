"""The incremental publish compares only a build's touched rows, and stays exact (issue 24).

After real dbt builds of the hand-worked landscape (tests/dbt/landscape.py, its noisy batches:
changes twice and out of order, webhooks redelivered, file drops overlapping), the analyst copy
is published from the previous published file and from scratch, and both must hold the same
tables, columns, types and rows. Between them, the cases where comparing only the build's scope
would miss rows, each checked to fall back to comparing every row of the tables it affects
(`PublishResult.compared` says which and why):

1. a normal increment, with an acknowledgement made between the runs (written outside dbt):
   the incremental marts and rule tables compare only the touched rows;
2. a failed build (a model fails, the job stops before publishing), then a build that succeeds:
   two builds since the last publish, so every table is compared;
3. as_of moves, nothing new (an empty scope): the tables whose as_of columns a post-hook
   refreshes on every row (stage latencies, the rule models) are compared in full, the other
   marts by the (empty) scope;
4. a full refresh: every table compared.
(Five dbt builds and one that fails: ~60-90 s.)
"""

from __future__ import annotations

import json
from datetime import timedelta

import duckdb
import pytest

from pipelines.lib import publish as publish_module
from pipelines.lib import warehouse
from pipelines.lib.publish import SCOPED_TABLES, publish
from pipelines.lib.recon.lifecycle import acknowledge, apply_lifecycle
from tests.analyst.test_incremental_publish import _contents
from tests.dbt.cli import dbt
from tests.dbt.landscape import INGESTED, RawWriter, land_batch, noisy_batches

AS_OF, LATER = "2026-03-05T00:00:00Z", "2026-04-30T00:00:00Z"
TOUCHED = "the build's touched rows"
SCOPED = {f"{s}.{t}" for s, t in SCOPED_TABLES}
AS_OF_REFRESHED = {f"{s}.{t}" for (s, t), v in SCOPED_TABLES.items() if v.needs != "marts"}


def _build(db, work, as_of: str, *extra: str) -> None:
    dbt(
        db, work, "build", "--resource-type", "seed", "--resource-type", "model",
        "--vars", json.dumps({"as_of": as_of}), *extra,
    )  # fmt: skip
    with warehouse.connection(db) as con:
        apply_lifecycle(con)


def _publish_both(tmp_path, db, step: str):
    """Publish incrementally and from scratch; the two copies must be equal."""
    analyst, scratch = tmp_path / "analyst.duckdb", tmp_path / "scratch" / "analyst.duckdb"
    result = publish(db, analyst)
    publish(db, scratch, incremental=False)
    assert result.incremental, step
    assert _contents(analyst) == _contents(scratch), step
    return result


def test_publish_compares_the_touched_rows_and_falls_back_when_it_must(tmp_path, monkeypatch):
    # these tiny files free a large share of their blocks at every publish: always start from
    # the published copy here (the restart from an empty file is test_incremental_publish's)
    monkeypatch.setattr(publish_module, "MAX_FREE_SHARE", 1.0)
    db = tmp_path / "warehouse.duckdb"
    warehouse.initialize(db)
    first, second = noisy_batches()
    batches = [first, second[: len(second) // 2], second[len(second) // 2 :]]
    writer = None

    def land(i: int) -> None:
        nonlocal writer
        with warehouse.connection(db) as con:
            if writer is None:
                writer = RawWriter(con)
            writer.con = con
            land_batch(con, writer, batches[i], INGESTED + timedelta(hours=i))

    land(0)
    _build(db, tmp_path, AS_OF)
    assert not publish(db, tmp_path / "analyst.duckdb").incremental

    # 1. a normal increment; an acknowledgement made between the runs
    with warehouse.connection(db) as con:
        (mismatch,) = con.execute(
            "select mismatch_id from recon.mismatches where status = 'open' "
            "order by mismatch_id limit 1"
        ).fetchone()
        assert acknowledge(con, mismatch, by="alice", note="known")
    land(1)
    _build(db, tmp_path, AS_OF)
    one = _publish_both(tmp_path, db, "increment")
    present = set(one.compared) & SCOPED
    assert {one.compared[t] for t in present} == {TOUCHED}, one.compared
    assert {"marts.returns", "marts.return_lines", "recon.recon_stock_mismatches"} <= present
    assert sum(sum(one.written.get(t, (0, 0))) for t in present) > 0  # the scope had changes
    assert one.compared["recon.mismatches"].startswith("every row")  # the acknowledgement

    # 2. a build that fails half-way (no publish after it), then one that succeeds
    land(2)
    with warehouse.connection(db) as con:
        con.execute("alter table marts.returns add column in_the_way integer")
    with pytest.raises(AssertionError, match="returns"):
        _build(db, tmp_path, AS_OF)  # on_schema_change='fail': the returns mart fails
    with warehouse.connection(db) as con:
        con.execute("alter table marts.returns drop column in_the_way")
    _build(db, tmp_path, AS_OF)
    two = _publish_both(tmp_path, db, "after a failed build")
    assert all("did not start from the published state" in two.compared[t] for t in present)

    # 3. as_of moves, nothing new landed (the build's scope is empty)
    _build(db, tmp_path, LATER)
    three = _publish_both(tmp_path, db, "as_of moved")
    for table in present:
        expected = "as_of moved" if table in AS_OF_REFRESHED else TOUCHED
        assert expected in three.compared[table], (table, three.compared[table])
        if table not in AS_OF_REFRESHED:
            assert table not in three.written, table  # nothing touched: nothing written

    # 4. a full refresh
    _build(db, tmp_path, LATER, "--full-refresh")
    four = _publish_both(tmp_path, db, "full refresh")
    assert all("(full refresh)" in four.compared[t] for t in present), four.compared
    with duckdb.connect(str(tmp_path / "analyst.duckdb"), read_only=True) as con:
        (acknowledged,) = con.execute(
            "select acknowledged_by from recon.mismatches where mismatch_id = ?", [mismatch]
        ).fetchone()
    assert acknowledged == "alice"
