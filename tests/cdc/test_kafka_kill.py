"""Kill the Kafka ingestion with SIGKILL mid-stream, 20 times: every event lands once.

100,000 bare Debezium envelopes of `erp.public.sale_line` (precise decimals) go to a real broker
(3 partitions). The ingestion runs as a subprocess (`python -m pipelines.lib.cdc.kafka`), which
prints a marker line after each batch it commits (`--print-batches`). The test waits for the
first marker (the process is inside its landing loop), lets 0-1 more batch land, then kills it
at a random moment of the next one, so kills fall before, inside and after DuckDB transactions.
Only a kill that hit the landing loop counts: the process died by the signal, had committed at
least one batch in this attempt and had not finished the stream. After each kill the raw table
holds exactly the batches the markers announced, plus at most the one committed just before the
kill (never part of a batch). After the last restart runs to completion, the raw table must hold
exactly the produced events (count, distinct positions, content). Then a replay from offset 0
changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.lib import warehouse
from pipelines.lib.cdc.kafka.offsets import SOURCE
from pipelines.lib.cdc.kafka.producer import publish
from pipelines.lib.cdc.land import resume_offsets
from tests.fixtures.kafka_broker import (
    PROJECT_ROOT,
    recreate_topics,
    sale_line_events,
    sale_line_price,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOPIC = "erp.public.sale_line"
N_EVENTS = 100_000
KILLS = 20
BATCH = 1_000


def _ingest_cmd(bootstrap: str, db, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.lib.cdc.kafka",
        "--bootstrap", bootstrap, "--db", str(db), "--landing", str(db.parent / "landing"),
        "--topics", r"^erp\.public\.sale_line$", "--max-records", "0",
        "--batch-size", str(BATCH), "--print-batches", *extra,
    ]  # fmt: skip


def _expected_table() -> pa.Table:
    """What the raw table must hold: event i sits at (i % 3, i // 3) (one in-order producer)."""
    idx = range(N_EVENTS)
    return pa.table(
        {
            "p": pa.array([i % 3 for i in idx], pa.int32()),
            "o": pa.array([i // 3 for i in idx], pa.int64()),
            "id": pa.array([i % 5000 + 1 for i in idx], pa.int64()),
            "price": pa.array([sale_line_price(i) for i in idx], pa.decimal128(16, 4)),
            "description": pa.array([f"line {i}" for i in idx], pa.string()),
        }
    )


def _no_orphans(db, wait_s: float = 30.0) -> None:
    """The killed run's Kafka fetch child (forked, same command line) dies with it."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if str(db).encode() in cmdline.read_bytes():
                    alive.append(cmdline.parent.name)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f"processes of a killed run still alive: {alive}"


def _content(con) -> tuple:
    return con.execute(
        "select count(*), count(distinct (_partition, _offset)), sum(unit_price), "
        "sum(hash(_partition, _offset, id, unit_price, description, _op)), max(_ingested_at) "
        "from raw.erp_sale_line"
    ).fetchone()


@pytest.mark.timeout(900)
def test_sigkill_twenty_times_then_every_event_exactly_once(kafka_bootstrap, tmp_path):
    recreate_topics(kafka_bootstrap, [TOPIC])
    assert publish(kafka_bootstrap, sale_line_events(N_EVENTS)) == N_EVENTS
    db = tmp_path / "warehouse.duckdb"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(20261126)

    kills = 0
    attempts = 0
    announced = 0  # rows the batch markers of every attempt so far said were committed
    batch_s = 0.05  # how long one batch takes, measured between two markers
    while kills < KILLS:
        attempts += 1
        assert attempts < 80, f"only {kills} kills landed mid-stream in {attempts} attempts"
        proc = subprocess.Popen(
            _ingest_cmd(kafka_bootstrap, db), cwd=PROJECT_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        # the first marker: one batch committed, the process is in its landing loop; then 0-1
        # more batch, then a random moment of the next one (a batch's time is learnt from the
        # markers, so a fast machine does not consume the stream in fewer than 20 kills)
        markers, times = [], []
        for _ in range(1 + rng.randint(0, 1)):
            line = proc.stdout.readline()
            if not line:
                break
            markers.append(json.loads(line))
            times.append(time.monotonic())
        if len(times) == 2:
            batch_s = times[1] - times[0]
        time.sleep(rng.uniform(0.0, batch_s))
        signalled = proc.poll() is None
        if signalled:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        markers += [json.loads(line) for line in proc.stdout.read().splitlines()]
        proc.stdout.close()
        _no_orphans(db)
        assert proc.returncode in (0, -signal.SIGKILL)
        batches = [m for m in markers if "batch_landed" in m]
        announced += sum(m["batch_landed"] for m in batches)
        with warehouse.connection(db, read_only=True) as con:
            (rows,) = con.execute("select count(*) from raw.erp_sale_line").fetchone()
        # batches are whole: what the markers announced, plus at most the one batch committed
        # in the instant between its commit and its marker
        assert 0 <= rows - announced <= BATCH, (rows, announced)
        announced = rows
        hit = (
            signalled
            and proc.returncode == -signal.SIGKILL
            and len(batches) >= 1
            and len(batches) == len(markers)  # no summary line: the stream was not finished
            and rows < N_EVENTS
        )
        kills += hit
        if rows == N_EVENTS:  # the stream ran out before 20 kills landed: start over
            break
    assert kills == KILLS, f"{kills} kills hit the landing loop before the stream was consumed"

    final = subprocess.run(
        _ingest_cmd(kafka_bootstrap, db), cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    assert summary["dead_letters"] == 0

    expected = _expected_table()  # noqa: F841 (read by DuckDB's replacement scan)
    with warehouse.connection(db) as con:
        count, distinct, price_sum, _, _ = _content(con)
        assert count == distinct == N_EVENTS
        assert price_sum == sum((sale_line_price(i) for i in range(N_EVENTS)), Decimal(0))
        for query in (
            "select _partition, _offset, id, unit_price, description from raw.erp_sale_line "
            "except all select * from expected",
            "select * from expected except all "
            "select _partition, _offset, id, unit_price, description from raw.erp_sale_line",
        ):
            assert con.execute(f"select count(*) from ({query})").fetchone()[0] == 0
        assert con.execute("select count(*) from meta.dead_letters").fetchone()[0] == 0
        ledger = resume_offsets(con, SOURCE)
        before = _content(con)
    ends = {(TOPIC, p): N_EVENTS // 3 + (1 if p < N_EVENTS % 3 else 0) for p in range(3)}
    assert ledger == ends

    # replay everything from offset 0: nothing changes, not even the ingestion times
    replay = subprocess.run(
        _ingest_cmd(kafka_bootstrap, db, "--from-offset", "0"), cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = json.loads(replay.stdout.strip().splitlines()[-1])
    assert summary["landed"] == {} and summary["skipped"] == N_EVENTS
    with warehouse.connection(db, read_only=True) as con:
        assert _content(con) == before
        assert resume_offsets(con, SOURCE) == ends
