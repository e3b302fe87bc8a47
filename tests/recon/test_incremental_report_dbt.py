"""The report cache and the incremental publish after real dbt builds (issue 24).

The hand-worked landscape (tests/dbt/landscape.py) lands in its two noisy batches (changes twice
and out of order, webhooks redelivered, file drops overlapping), the second at an as_of weeks
later (the waiting rules' windows pass too); after each, dbt builds incrementally, the lifecycle
and planning run, and: the report from the cache equals the report from scratch, and the analyst
copy published from the previous one equals a publish from scratch. (Two dbt builds: ~30 s.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pipelines.lib import warehouse
from pipelines.lib.publish import publish
from pipelines.lib.recon.lifecycle import apply_lifecycle
from pipelines.lib.recon.report import refresh_open_report
from pipelines.lib.writeback import plan_adjustments
from tests.analyst.test_incremental_publish import _contents
from tests.dbt.cli import dbt
from tests.dbt.landscape import INGESTED, RawWriter, land_batch, noisy_batches
from tests.recon.test_incremental_report import assert_same_as_from_scratch

AS_OFS = ("2026-03-05T00:00:00Z", "2026-04-30T00:00:00Z")


def test_report_cache_and_publish_after_incremental_builds(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    warehouse.initialize(db)
    analyst, scratch = tmp_path / "analyst.duckdb", tmp_path / "scratch" / "analyst.duckdb"
    writer = None
    batches = noisy_batches()
    seen = []
    for step, (batch, as_of) in enumerate(zip(batches, AS_OFS, strict=True)):
        with warehouse.connection(db) as con:
            if writer is None:
                writer = RawWriter(con)
            writer.con = con  # the offsets and file rows so far, on this connection
            land_batch(con, writer, batch, INGESTED + timedelta(hours=step))
        dbt(
            db, tmp_path, "build", "--resource-type", "seed", "--resource-type", "model",
            "--vars", json.dumps({"as_of": as_of}),
        )  # fmt: skip
        with warehouse.connection(db) as con:
            merge = apply_lifecycle(con)
            plan_adjustments(con, now=datetime(2026, 5, 1, tzinfo=UTC))
            refresh = refresh_open_report(con)
            assert_same_as_from_scratch(con)
        seen.append((merge.open_total, refresh.recomputed_cases, refresh.cases))
        again = publish(db, analyst)
        publish(db, scratch, incremental=False)
        assert again.incremental == (step > 0)
        assert _contents(analyst) == _contents(scratch), step
    assert all(total > 0 for total, _, _ in seen), seen  # something to report at every step
