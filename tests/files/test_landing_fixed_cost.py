"""What landing costs in an increment beyond its rows (issue 24): GE's objects made once per
process, its batch read from the row groups stamped by the landing, and the warm-up that a
long-lived process (`returnsync watch`) pays before it waits."""

from __future__ import annotations

import expectations
from expectations import validate_batch
from expectations.suites import SUITES
from pipelines.lib.files import columnar, land_files, warm_up
from pipelines.lib.warehouse import connect
from tests.files.test_files_checks import delivery, write_ndjson

TABLE = "returns_saas_webhooks"


def _outcome(o) -> tuple:
    return (o.rows, o.success, sorted(o.results, key=repr), sorted(map(repr, o.sample)))


def test_validation_reads_the_landed_batch_whatever_came_before(tmp_path):
    landing = tmp_path / "landing"
    con = connect(tmp_path / "w.duckdb")
    try:
        write_ndjson(landing / "returns_saas" / "a.ndjson", [delivery("w-0", "return.bogus")])
        first = land_files(con, landing)[TABLE]
        write_ndjson(
            landing / "returns_saas" / "b.ndjson",
            [delivery("w-1"), delivery("w-2", "return.exploded", quantity=0), delivery("w-3")],
        )
        second = land_files(con, landing)[TABLE]
        write_ndjson(landing / "returns_saas" / "c.ndjson", [delivery("w-4"), delivery("w-5")])
        third = land_files(con, landing)[TABLE]

        assert first.ingested_at < second.ingested_at < third.ingested_at
        whole = validate_batch(con, TABLE, second.landed_sha256)
        stamped = validate_batch(con, TABLE, second.landed_sha256, since=second.ingested_at)
        # the same GE objects validate the next batch: nothing of the failing one carries over
        clean = validate_batch(con, TABLE, third.landed_sha256, since=third.ingested_at)
        again = validate_batch(con, TABLE, second.landed_sha256, since=second.ingested_at)
        # the stamp is a real bound: an earlier batch is not read from after it
        later = validate_batch(con, TABLE, first.landed_sha256, since=second.ingested_at)
        earlier = validate_batch(con, TABLE, first.landed_sha256, since=first.ingested_at)
    finally:
        con.close()

    assert _outcome(stamped) == _outcome(whole) == _outcome(again)
    assert stamped.rows == 3 and not stamped.success
    failed = {(r.frame, r.column, r.unexpected_count, r.element_count) for r in stamped.failed}
    assert failed == {("deliveries", "topic", 1, 3), ("line_items", "quantity", 1, 3)}
    assert clean.success and clean.rows == 2
    assert {r.element_count for r in clean.results} == {2}
    assert later.rows == 0
    assert earlier.rows == 1 and not earlier.success


def test_warm_up_prepares_every_suite_and_reader(tmp_path):
    warm_up()
    frames = {(table, frame.name) for table, suite in SUITES.items() for frame in suite}
    assert set(expectations._PREPARED) == frames
    prepared = dict(expectations._PREPARED)
    assert columnar._compiled_check.cache_info().currsize >= 2  # webhooks and Shopify refunds

    landing = tmp_path / "landing"
    write_ndjson(landing / "returns_saas" / "a.ndjson", [delivery("w-1")])
    con = connect(tmp_path / "w.duckdb")
    try:
        summary = land_files(con, landing)[TABLE]
        outcome = validate_batch(con, TABLE, summary.landed_sha256, since=summary.ingested_at)
    finally:
        con.close()
    assert outcome.success and outcome.rows == 1
    # validating made no new GE objects: the warm-up's are the ones used
    assert all(expectations._PREPARED[k] is v for k, v in prepared.items())
    assert set(expectations._PREPARED) == frames
