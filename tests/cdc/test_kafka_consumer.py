"""The Kafka consumer on a real broker: bounded runs, ledger resume, lag, dead letters, replay."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest

from pipelines.lib import warehouse
from pipelines.lib.cdc.kafka.client import KafkaUnavailableError
from pipelines.lib.cdc.kafka.consumer import consume
from pipelines.lib.cdc.kafka.offsets import (
    SOURCE,
    consumer_lag,
    end_offsets,
    lag,
    partitions_for_topic,
)
from pipelines.lib.cdc.kafka.producer import publish
from pipelines.lib.cdc.land import resume_offsets
from pipelines.settings import Settings
from tests.fixtures.kafka_broker import (
    PROJECT_ROOT,
    load_broker_module,
    recreate_topics,
    sale_line_event,
    sale_line_events,
    sale_line_price,
)

pytestmark = pytest.mark.kafka

TOPIC = "erp.public.sale_line"
RECEIPTS = "wms.public.receipts"


@pytest.fixture
def kafka_settings(kafka_bootstrap, tmp_path) -> Settings:
    """Settings for one test: its own warehouse, only this test's topics."""
    recreate_topics(kafka_bootstrap, [TOPIC, RECEIPTS])
    return Settings.from_env(
        env={},
        base_dir=tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        kafka_group="returnsync-test",
        kafka_topic_pattern=r"^(erp\.public\.sale_line|wms\.public\.receipts)$",
    )


def _count(settings: Settings, table: str = "raw.erp_sale_line") -> int:
    with warehouse.connection(settings.db_path, read_only=True) as con:
        return con.execute(f"select count(*) from {table}").fetchone()[0]


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "in_process"])
def test_bounded_runs_resume_from_the_ledger_and_commit_for_lag(kafka_settings, prefetch):
    publish(kafka_settings.kafka_bootstrap, sale_line_events(3000))
    ends = end_offsets(kafka_settings, topics=[TOPIC])
    assert ends == {(TOPIC, 0): 1000, (TOPIC, 1): 1000, (TOPIC, 2): 1000}

    first = consume(kafka_settings, max_records=1200, batch_size=500, prefetch=prefetch)
    assert first.landed == {"erp_sale_line": 1200}
    with warehouse.connection(kafka_settings.db_path, read_only=True) as con:
        assert sum(lag(kafka_settings, con).values()) == 1800
        ledger = resume_offsets(con, SOURCE)
    assert sum(ledger.values()) == 1200

    # the group's committed offsets follow the ledger (lag monitoring), they are never read back
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets(kafka_settings.kafka_group)[kafka_settings.kafka_group]
    finally:
        admin.close()
    assert {(tp.topic, tp.partition): om.offset for tp, om in committed.items()} == ledger

    rest = consume(kafka_settings, prefetch=prefetch)  # caught up to the end: it ends
    assert rest.landed == {"erp_sale_line": 1800}
    lags = consumer_lag(kafka_settings)
    assert len(lags) == 6 and set(lags.values()) == {0}
    with warehouse.connection(kafka_settings.db_path, read_only=True) as con:
        got = con.execute(
            "select _partition, _offset, id, unit_price, _op from raw.erp_sale_line "
            "where _partition = 1 and _offset = 7"
        ).fetchone()
    i = 7 * 3 + 1  # event i went to partition i % 3, offset i // 3
    assert got == (1, 7, i % 5000 + 1, sale_line_price(i), "c")
    assert _count(kafka_settings) == 3000

    again = consume(kafka_settings)  # nothing new: lands nothing
    assert again.landed == {} and again.skipped == 0


def test_replay_from_offset_and_time_changes_nothing(kafka_settings):
    publish(kafka_settings.kafka_bootstrap, sale_line_events(600))
    consume(kafka_settings)
    with warehouse.connection(kafka_settings.db_path, read_only=True) as con:
        before = con.execute("select count(*), sum(unit_price) from raw.erp_sale_line").fetchone()
    assert before == (600, sum((sale_line_price(i) for i in range(600)), Decimal(0)))

    replay = consume(kafka_settings, start=0)
    assert replay.landed == {} and replay.skipped == 600
    by_time = consume(kafka_settings, start_timestamp_ms=0, topics=[TOPIC])
    assert by_time.landed == {} and by_time.skipped == 600
    one = consume(kafka_settings, start={(TOPIC, 2): 150})
    assert one.skipped == 50
    assert partitions_for_topic(kafka_settings, TOPIC) == [0, 1, 2]
    assert _count(kafka_settings) == 600


def test_bad_records_become_dead_letters_and_the_batch_goes_on(kafka_settings):
    good = [sale_line_event(i) for i in range(10)]
    bad = [
        {"topic": TOPIC, "partition": 0, "key": b'{"id": 1}', "value": b"{not json"},
        {"topic": TOPIC, "partition": 1, "key": b'{"id": 2}', "value": b'{"op": "x"}'},
    ]
    tombstone = {"topic": TOPIC, "partition": 2, "key": b'{"id": 3}', "value": None}
    receipt = {
        "topic": RECEIPTS,
        "partition": 0,
        "key": {"receipt_id": 9},
        "value": {
            "before": None,
            "after": {
                "receipt_id": 9, "dc_code": "DC-EAST", "rma_number": "lr 104233",
                "tracking_number": None, "sku": "P-1", "lot": None, "serial": None,
                "quantity": "2.500", "received_at": "2026-11-20T10:00:00.000000Z",
                "license_plate": "LP1",
            },
            "source": {"ts_ms": 1_780_000_000_000, "lsn": 5, "txId": 1, "table": "receipts"},
            "op": "c",
            "ts_ms": 1_780_000_000_001,
        },
    }  # fmt: skip
    publish(kafka_settings.kafka_bootstrap, [*good, *bad, tombstone, receipt])
    (kafka_settings.landing_dir / "cdc").mkdir(parents=True)
    (kafka_settings.landing_dir / "cdc" / "connectors.json").write_text(
        json.dumps({"wms": {"decimal.handling.mode": "string"}})
    )

    result = consume(kafka_settings)
    assert result.landed == {"erp_sale_line": 11, "wms_receipts": 1}
    assert result.dead_letters == 2
    with warehouse.connection(kafka_settings.db_path, read_only=True) as con:
        letters = con.execute(
            "select position, error from meta.dead_letters order by position"
        ).fetchall()
        assert [p for p, _ in letters] == [f"{TOPIC}:0:4", f"{TOPIC}:1:3"]
        assert all(e for _, e in letters)
        assert con.execute(
            "select count(*) from raw.erp_sale_line where _is_tombstone"
        ).fetchone() == (1,)
        assert con.execute("select quantity, rma_number from raw.wms_receipts").fetchone() == (
            Decimal("2.500"),
            "lr 104233",
        )
    assert consume(kafka_settings, start=0).dead_letters == 0  # replay: no new letters


def test_unreachable_bootstrap_is_a_clear_error(tmp_path):
    port = load_broker_module().free_port()  # nothing listens there
    settings = Settings.from_env(env={}, base_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{port}")
    with pytest.raises(KafkaUnavailableError, match=f"127.0.0.1:{port}"):
        consume(settings, bootstrap_timeout_ms=2000)
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.lib.cdc.kafka", "--bootstrap", f"127.0.0.1:{port}",
         "--db", str(tmp_path / "w.duckdb"), "--bootstrap-timeout-ms", "2000"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in done.stderr


def test_not_configured_is_a_clear_error(tmp_path):
    settings = Settings.from_env(env={}, base_dir=tmp_path)
    with pytest.raises(ValueError, match="RETURNSYNC_KAFKA_BOOTSTRAP"):
        consume(settings)


def test_a_cut_batch_keeps_a_prefix_of_each_partition():
    """When the prefetch children together reach max_records, the decoded batch that crosses it
    is cut to its first records: each partition keeps consecutive reads from its start, rows and
    dead letters alike, and the ledger's next offsets follow the cut."""
    from pipelines.lib.cdc.land import KafkaRecord, decode_batch

    events = {o: sale_line_event(o) for o in (5, 6, 7)}
    records = [KafkaRecord(TOPIC, 0, o, e["key"], e["value"]) for o, e in events.items()]
    records += [KafkaRecord(TOPIC, 1, o, None, v) for o, v in ((0, b"not json"), (1, b"{also not"))]
    decoded = decode_batch(records, connectors={})
    assert decoded.count == 5 and decoded.skipped == 0
    assert decoded.tables["erp_sale_line"]["_offset"].to_pylist() == [5, 6, 7]
    assert [letter.position for _, _, letter in decoded.letters] == [f"{TOPIC}:1:0", f"{TOPIC}:1:1"]

    cut = decoded.head(4)
    assert [(t, p, list(o)) for t, p, o in cut.chunks] == [(TOPIC, 0, [5, 6, 7]), (TOPIC, 1, [0])]
    assert cut.count == 4 and cut.tables["erp_sale_line"].num_rows == 3
    assert [letter.position for _, _, letter in cut.letters] == [f"{TOPIC}:1:0"]
    assert cut.next_offsets() == {(TOPIC, 0): 8, (TOPIC, 1): 1}  # the ledger and the lag commit

    two = decoded.head(2)
    assert [(p, list(o)) for _, p, o in two.chunks] == [(0, [5, 6])] and not two.letters
    assert two.tables["erp_sale_line"]["_offset"].to_pylist() == [5, 6]
    assert two.next_offsets() == {(TOPIC, 0): 7}
