"""Landing Kafka records: rows, dead letters and the stream ledger, atomically and idempotently."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from pipelines.lib import warehouse
from pipelines.lib.cdc import land
from pipelines.lib.cdc.land import KafkaRecord, land_batch, load_connectors, resume_offsets

CONNECTORS = {
    "erp": {"decimal.handling.mode": "precise"},
    "wms": {"decimal.handling.mode": "string"},
}
INVOICES = "erp.public.account_invoice"
RECEIPTS = "wms.public.receipts"
T0 = 1_700_000_000_000  # ms


@pytest.fixture
def con(tmp_path):
    c = warehouse.connect(tmp_path / "warehouse.duckdb")
    yield c
    c.close()


def invoice(offset, inv_id=None, total="AeJA", op="c", partition=0, ts=None):
    """An ERP invoice change: total base64(123456) = 1234.56 at scale 2."""
    inv_id = offset if inv_id is None else inv_id
    env = {
        "before": None,
        "after": {
            "id": inv_id,
            "number": f"INV-{inv_id}",
            "type": "out",
            "state": "posted",
            "invoice_date": 19723,
            "total_amount_cache": total,
            "create_date": 1700000000123456,
        },
        "source": {"ts_ms": ts or T0 + offset, "lsn": 1000 + offset, "txId": 7},
        "op": op,
        "ts_ms": (ts or T0 + offset) + 5,
    }
    return KafkaRecord(
        INVOICES, partition, offset, json.dumps({"id": inv_id}).encode(), json.dumps(env).encode()
    )


def receipt(offset, quantity="2.500"):
    env = {
        "after": {
            "receipt_id": offset,
            "dc_code": "DC-EAST",
            "rma_number": "lr 104233",
            "sku": "P-1",
            "quantity": quantity,
            "received_at": "2024-03-01T12:00:00+02:00",
            "license_plate": "LP-1",
        },
        "source": {"ts_ms": T0 + offset},
        "op": "c",
    }
    return KafkaRecord(
        RECEIPTS, 0, offset, json.dumps({"receipt_id": offset}).encode(), json.dumps(env).encode()
    )


def count(con, table):
    return con.execute(f"select count(*) from {table}").fetchone()[0]


def offsets(con, table="raw.erp_account_invoice"):
    return [r[0] for r in con.execute(f"select _offset from {table} order by _offset").fetchall()]


def test_lands_typed_rows_and_ledger(con):
    result = land_batch(
        con,
        [invoice(0), invoice(1, total="/h3A"), receipt(0)],
        source="kafka",
        connectors=CONNECTORS,
    )
    assert result.landed == {"erp_account_invoice": 2, "wms_receipts": 1}
    assert (result.dead_letters, result.skipped) == (0, 0)
    assert result.max_changed_at == datetime.fromtimestamp((T0 + 1) / 1000, UTC)
    rows = con.execute(
        "select _topic, _partition, _offset, _op, _is_tombstone, _source_lsn, _source_tx_id, "
        "_changed_at, _key, id, total_amount_cache, invoice_date, create_date "
        "from raw.erp_account_invoice order by _offset"
    ).fetchall()
    assert rows[0] == (
        INVOICES,
        0,
        0,
        "c",
        False,
        1000,
        7,
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        '{"id":0}',
        0,
        Decimal("1234.56"),
        date(2024, 1, 1),
        datetime(2023, 11, 14, 22, 13, 20, 123456),
    )
    assert rows[1][10] == Decimal("-1234.56")
    wms = con.execute("select quantity, received_at, rma_number from raw.wms_receipts").fetchone()
    assert wms == (Decimal("2.500"), datetime(2024, 3, 1, 10, 0, tzinfo=UTC), "lr 104233")
    assert resume_offsets(con, "kafka") == {(INVOICES, 0): 2, (RECEIPTS, 0): 1}
    assert resume_offsets(con, "file") == {}


def test_same_batch_twice_changes_nothing(con):
    batch = [invoice(i) for i in range(5)] + [receipt(i) for i in range(3)]
    land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    before = con.execute("select * exclude (_ingested_at) from raw.erp_account_invoice").fetchall()
    again = land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    assert again.landed == {} and again.skipped == 8 and again.dead_letters == 0
    after = con.execute("select * exclude (_ingested_at) from raw.erp_account_invoice").fetchall()
    assert sorted(after) == sorted(before)
    assert count(con, "raw.wms_receipts") == 3


def test_overlapping_and_out_of_order_batches(con):
    land_batch(con, [invoice(i) for i in range(10, 20)], source="kafka", connectors=CONNECTORS)
    # below the ledger's next offset but never landed: lands (late file, replay from 0)
    result = land_batch(
        con, [invoice(i) for i in range(0, 15)], source="kafka", connectors=CONNECTORS
    )
    assert result.landed == {"erp_account_invoice": 10} and result.skipped == 5
    assert offsets(con) == list(range(20))
    # duplicates inside one batch land once
    result = land_batch(con, [invoice(20), invoice(20)], source="kafka", connectors=CONNECTORS)
    assert result.landed == {"erp_account_invoice": 1} and result.skipped == 1


def test_positions_are_per_topic_and_partition(con):
    land_batch(
        con, [invoice(0, partition=0), invoice(0, partition=1)], source="kafka", connectors={}
    )
    assert count(con, "raw.erp_account_invoice") == 2
    assert resume_offsets(con, "kafka") == {(INVOICES, 0): 1, (INVOICES, 1): 1}


def test_ledger_never_moves_backwards(con):
    land_batch(con, [invoice(i) for i in range(10)], source="kafka", connectors=CONNECTORS)
    land_batch(con, [invoice(3)], source="kafka", connectors=CONNECTORS)
    assert resume_offsets(con, "kafka") == {(INVOICES, 0): 10}


def test_atomic_rows_dead_letters_and_ledger(con):
    def fail(c, result):
        raise RuntimeError("crash before commit")

    batch = [invoice(0), KafkaRecord(INVOICES, 0, 1, b'{"id": 1}', b"{broken"), receipt(0)]
    with pytest.raises(RuntimeError):
        land_batch(con, batch, source="kafka", connectors=CONNECTORS, in_transaction=fail)
    assert count(con, "raw.erp_account_invoice") == 0
    assert count(con, "raw.wms_receipts") == 0
    assert count(con, "meta.dead_letters") == 0
    assert resume_offsets(con, "kafka") == {}
    # the retry lands everything once
    result = land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    assert result.landed == {"erp_account_invoice": 1, "wms_receipts": 1}
    assert result.dead_letters == 1


def test_dead_letters_do_not_stop_the_batch(con):
    batch = [
        invoice(0),
        KafkaRecord(INVOICES, 0, 1, b'{"id": 1}', b'{"op": "c", "after": '),
        KafkaRecord(INVOICES, 0, 2, None, invoice(2).value),
        invoice(3, op="x"),
        invoice(4, total="12,50"),
        KafkaRecord("erp.public.unknown_table", 0, 0, b'{"id": 1}', invoice(5).value),
        invoice(6),
    ]
    result = land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    assert result.landed == {"erp_account_invoice": 2}
    assert result.dead_letters == 5
    assert result.dead_letters_by_table == {
        "erp_account_invoice": 4,
        "erp.public.unknown_table": 1,
    }
    letters = dict(
        con.execute("select position, error from meta.dead_letters where source = 'cdc'").fetchall()
    )
    assert letters[f"{INVOICES}:0:1"].startswith("value: bad JSON")
    assert letters[f"{INVOICES}:0:2"] == "key: missing record key"
    assert letters[f"{INVOICES}:0:3"] == "op: unknown operation 'x'"
    assert letters[f"{INVOICES}:0:4"].startswith("after.total_amount_cache: bad number")
    assert letters["erp.public.unknown_table:0:0"].startswith("topic: unknown topic")
    raw = con.execute(
        "select raw from meta.dead_letters where position = ?", [f"{INVOICES}:0:1"]
    ).fetchone()[0]
    assert raw == '{"op": "c", "after": '
    # the ledger covers dead letters too; replaying them adds nothing
    assert resume_offsets(con, "kafka") == {(INVOICES, 0): 7, ("erp.public.unknown_table", 0): 1}
    again = land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    assert (again.landed, again.dead_letters, again.skipped) == ({}, 0, 7)
    assert count(con, "meta.dead_letters") == 5


def test_values_arrow_cannot_hold_are_dead_letters(con):
    huge = json.loads(invoice(1).value)
    huge["source"]["lsn"] = 2**63
    batch = [invoice(0), KafkaRecord(INVOICES, 0, 1, b'{"id": 1}', json.dumps(huge).encode())]
    result = land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    assert result.landed == {"erp_account_invoice": 1} and result.dead_letters == 1
    error = con.execute("select error from meta.dead_letters").fetchone()[0]
    assert error == f"source.lsn: out of range: {2**63}"


def test_tombstones_and_truncate_are_rows(con):
    delete = json.dumps(
        {
            "before": {"id": 1, "number": "", "total_amount_cache": "AA=="},
            "after": None,
            "source": {"ts_ms": T0, "lsn": 5},
            "op": "d",
        }
    ).encode()
    truncate = json.dumps({"source": {"ts_ms": T0 + 9, "lsn": 6}, "op": "t"}).encode()
    batch = [
        invoice(0, inv_id=1),
        KafkaRecord(INVOICES, 0, 1, b'{"id": 1}', delete),
        KafkaRecord(INVOICES, 0, 2, b'{"id": 1}', None),
        KafkaRecord(INVOICES, 0, 3, None, truncate),
    ]
    result = land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    assert result.landed == {"erp_account_invoice": 4}
    rows = con.execute(
        "select _op, _is_tombstone, _key, id, number, total_amount_cache, _changed_at "
        "from raw.erp_account_invoice order by _offset"
    ).fetchall()
    assert rows[1] == (
        "d",
        False,
        '{"id":1}',
        1,
        None,
        None,
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    )
    assert rows[2] == ("d", True, '{"id":1}', 1, None, None, None)
    assert rows[3][:6] == ("t", False, None, None, None, None)


def test_retry_dead_letters_lands_what_now_decodes(con, monkeypatch):
    # Before the contract knew the table, its records were dead letters ("decoder fix" later).
    table = land.CDC_BY_TOPIC[RECEIPTS]
    monkeypatch.delitem(land.CDC_BY_TOPIC, RECEIPTS)
    batch = [receipt(0), receipt(1, quantity="oops")]
    assert land_batch(con, batch, source="kafka", connectors=CONNECTORS).dead_letters == 2
    monkeypatch.setitem(land.CDC_BY_TOPIC, RECEIPTS, table)
    # an ordinary redelivery skips dead-lettered positions
    plain = land_batch(con, batch, source="kafka", connectors=CONNECTORS)
    assert plain.landed == {} and plain.skipped == 2
    # a replay decodes them again: what decodes now lands and leaves the dead letters
    replay = land_batch(con, batch, source="kafka", connectors=CONNECTORS, retry_dead_letters=True)
    assert replay.landed == {"wms_receipts": 1} and replay.recovered == 1
    assert replay.dead_letters == 0 and replay.dead_letters_by_table == {}
    assert offsets(con, "raw.wms_receipts") == [0]
    assert con.execute("select position from meta.dead_letters").fetchall() == [
        (f"{RECEIPTS}:0:1",)
    ]
    # and replaying once more changes nothing: offset 0 is landed, offset 1 keeps its dead letter
    # (both skipped: every record of a batch is landed, a new dead letter or skipped)
    again = land_batch(con, batch, source="kafka", connectors=CONNECTORS, retry_dead_letters=True)
    assert again.landed == {} and again.dead_letters == 0 and again.skipped == 2


def test_decimal_mode_from_connectors(con):
    # "1250" is base64 under `precise` but a decimal under `string`: the connector decides.
    rec = receipt(0, quantity="1250")
    land_batch(con, [rec], source="kafka", connectors=CONNECTORS)
    assert con.execute("select quantity from raw.wms_receipts").fetchone()[0] == Decimal("1250.000")


def test_load_connectors(tmp_path):
    assert load_connectors(None) == {}
    assert load_connectors(tmp_path) == {}
    (tmp_path / "cdc").mkdir()
    (tmp_path / "cdc" / "connectors.json").write_text(json.dumps(CONNECTORS))
    assert load_connectors(tmp_path) == CONNECTORS
    (tmp_path / "cdc" / "connectors.json").write_text('{"erp": {"decimal.handling.mode": "hex"}}')
    with pytest.raises(ValueError, match=r"decimal\.handling\.mode"):
        load_connectors(tmp_path)


@pytest.mark.kafka
def test_landing_asset_in_kafka_mode(settings_env, kafka_bootstrap, monkeypatch):
    import dagster as dg

    from assets.cdc import cdc_landing
    from pipelines.lib.cdc.kafka.producer import publish
    from pipelines.resources import SettingsResource
    from tests.fixtures.kafka_broker import recreate_topics

    topic = "wms.public.inspections"
    recreate_topics(kafka_bootstrap, [topic], partitions=2)
    records = [
        {
            "topic": topic,
            "partition": i % 2,
            "key": {"inspection_id": i},
            "value": {
                "after": {"inspection_id": i, "receipt_id": 1, "grade": "A", "quantity": "1.500"},
                "source": {"ts_ms": T0 + i},
                "op": "c",
            },
        }
        for i in range(5)
    ]
    publish(kafka_bootstrap, records, partitions=2)
    monkeypatch.setenv("RETURNSYNC_KAFKA_TOPICS", r"^wms\.public\.inspections$")
    (settings_env.landing_dir / "cdc").mkdir()
    (settings_env.landing_dir / "cdc" / "connectors.json").write_text(json.dumps(CONNECTORS))
    resources = {"settings": SettingsResource(kafka_bootstrap=kafka_bootstrap)}
    result = dg.materialize([cdc_landing], resources=resources)
    assert result.success
    mats = {
        m.asset_key.path[-1]: m.metadata
        for m in result.asset_materializations_for_node("cdc_landing")
    }
    meta = mats["wms_inspections"]
    assert meta["rows_landed"].value == 5 and meta["mode"].value == "kafka"
    assert meta["consumer_lag"].value == {"0": 0, "1": 0}
    assert meta["last_source_change_at"].value == (T0 + 4) / 1000
    with warehouse.connection(settings_env.db_path) as c:
        assert c.execute("select sum(quantity) from raw.wms_inspections").fetchone()[0] == Decimal(
            "7.500"
        )
