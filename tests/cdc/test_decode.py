"""The Debezium decoder: every real sample in ../shared/fixtures/debezium, every encoding variant.

Values are asserted exactly: money as `Decimal` to the cent, times as UTC datetimes.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.lib.cdc.decode import (
    DecodeError,
    decimal_mode_for,
    decode_envelope,
    decode_row,
    decode_with_schema,
)
from pipelines.lib.contracts import CDC_BY_TOPIC, CdcTable

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "debezium"

INVOICE = CDC_BY_TOPIC["erp.public.account_invoice"]  # total_amount_cache decimal(16,2)
SALE_LINE = CDC_BY_TOPIC["erp.public.sale_line"]  # unit_price decimal(16,4)
SALE = CDC_BY_TOPIC["erp.public.sale_sale"]  # sale_date date, create/write_date timestamp
RECEIPTS = CDC_BY_TOPIC["wms.public.receipts"]  # quantity decimal(12,3), received_at timestamptz

# The samples' table, as a contract, to run the contract-driven path over real events too.
CUSTOMERS = CdcTable(
    "inventory",
    "customers",
    {"id": "bigint", "first_name": "varchar", "last_name": "varchar", "email": "varchar"},
)
ANNE = {"id": 1004, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"}
ANNE_PG = {**ANNE, "id": 1}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- the real samples, generic path --------------------------------------------------------------


def test_every_fixture_is_covered():
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


EXPECTED = {
    # name: (op, has_schema, before, after, changed_at, lsn, txId)
    "core_test_serde-update.json": (
        "u",
        False,
        {**ANNE, "first_name": "Anne-Marie"},
        ANNE,
        utc(2016, 6, 9, 16, 56, 51, 815000),  # source.ts_ms is 0: the envelope's ts_ms
        None,
        None,
    ),
    "core_test_serde-with-schema.json": (
        "c",
        True,
        None,
        ANNE,
        utc(2016, 6, 9, 16, 56, 51, 815000),
        None,
        None,
    ),
    "core_test_serde-without-schema.json": (
        "c",
        False,
        None,
        ANNE,
        utc(2016, 6, 9, 16, 56, 51, 815000),
        None,
        None,
    ),
    "pg_doc_create_schema_payload.json": (
        "c",
        True,
        None,
        ANNE_PG,
        utc(2019, 5, 28, 8, 58, 24, 863000),
        24023128,
        555,
    ),
    "pg_doc_update_payload.json": (
        "u",
        False,
        {"id": 1},
        {**ANNE_PG, "first_name": "Anne Marie"},
        utc(2019, 5, 28, 8, 58, 24, 863000),
        24023128,
        556,
    ),
    "pg_doc_delete_payload.json": (
        "d",
        False,
        {"id": 1},
        None,
        utc(2019, 5, 28, 8, 58, 24, 863000),
        46523128,
        556,
    ),
    "pg_doc_truncate_payload.json": (
        "t",
        False,
        None,
        None,
        utc(2019, 5, 28, 8, 58, 24, 863000),
        46523128,
        556,
    ),
    "pg_doc_message_payload.json": (
        "m",
        False,
        None,
        None,
        utc(2019, 5, 28, 8, 58, 24, 863000),
        46523128,
        556,
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_generic(name):
    op, has_schema, before, after, changed_at, lsn, tx = EXPECTED[name]
    env = decode_envelope(fixture(name))
    assert env.op == op
    assert env.has_schema is has_schema
    assert env.before == before
    assert env.after == after
    assert env.changed_at == changed_at
    assert env.source_lsn == lsn
    assert env.source_tx_id == tx
    assert not env.is_tombstone


def test_fixture_details():
    create = decode_envelope(fixture("pg_doc_create_schema_payload.json"))
    assert create.source["version"] == "{debezium-version}"  # doc placeholder tolerated
    assert create.source["snapshot"] is True
    assert create.source_ts_ms == 1559033904863
    assert create.ts_ms == 1559033904863
    message = decode_envelope(fixture("pg_doc_message_payload.json"))
    assert message.message == {"prefix": "foo", "content": "Ymfy"}
    mysql = decode_envelope(fixture("core_test_serde-with-schema.json"))
    assert mysql.source["query"].startswith("INSERT INTO customers")
    assert mysql.source_ts_ms == 0
    # same event with and without schema decodes alike
    bare = decode_envelope(fixture("core_test_serde-without-schema.json"))
    assert (bare.op, bare.after, bare.source, bare.ts_ms) == (
        mysql.op,
        mysql.after,
        mysql.source,
        mysql.ts_ms,
    )


# -- the real samples, contract-driven path ------------------------------------------------------


@pytest.mark.parametrize(
    "name,key,expected",
    [
        ("core_test_serde-without-schema.json", {"id": 1004}, ANNE),
        ("core_test_serde-with-schema.json", {"id": 1004}, ANNE),
        ("core_test_serde-update.json", {"id": 1004}, ANNE),
        ("pg_doc_create_schema_payload.json", {"id": 1}, ANNE_PG),
        ("pg_doc_update_payload.json", {"id": 1}, {**ANNE_PG, "first_name": "Anne Marie"}),
        # a delete keeps only the key: the before image is never data
        (
            "pg_doc_delete_payload.json",
            {"id": 1},
            {"id": 1, "first_name": None, "last_name": None, "email": None},
        ),
        (
            "pg_doc_truncate_payload.json",
            None,
            {"id": None, "first_name": None, "last_name": None, "email": None},
        ),
    ],
)
def test_fixture_contract(name, key, expected):
    row = decode_row(CUSTOMERS, None if key is None else json.dumps(key), fixture(name))
    assert {c: row[c] for c in CUSTOMERS.columns} == expected
    assert row["_extra"] is None
    assert row["_key"] == (None if key is None else json.dumps(key, separators=(",", ":")))
    assert row["_op"] == EXPECTED[name][0]
    assert row["_changed_at"] == EXPECTED[name][4]
    assert row["_source_lsn"] == EXPECTED[name][5]


def test_fixture_message_is_not_a_table_change():
    with pytest.raises(DecodeError, match=r"^op: 'm' is a logical decoding message"):
        decode_row(CUSTOMERS, b'{"id": 1}', fixture("pg_doc_message_payload.json"))


def test_fixture_with_unknown_columns_goes_to_extra():
    narrow = CdcTable("inventory", "customers", {"id": "bigint", "email": "varchar"})
    row = decode_row(narrow, b'{"id": 1004}', fixture("core_test_serde-with-schema.json"))
    assert row["id"] == 1004
    assert json.loads(row["_extra"]) == {"first_name": "Anne", "last_name": "Kretchmar"}


# -- hand-built envelopes: decimals --------------------------------------------------------------


def envelope(after, op="c", **source):
    return json.dumps(
        {
            "before": None,
            "after": after,
            "source": {"version": "3.0.0.Final", "ts_ms": 1700000000000, "lsn": 10, **source},
            "op": op,
            "ts_ms": 1700000000123,
        }
    )


def invoice(total, mode="precise"):
    after = {"id": 7, "number": "CN-7", "type": "out", "total_amount_cache": total}
    return decode_row(INVOICE, b'{"id": 7}', envelope(after), decimal_mode=mode)[
        "total_amount_cache"
    ]


@pytest.mark.parametrize(
    "mode,encoded,expected",
    [
        ("precise", "AeJA", Decimal("1234.56")),  # base64(123456), scale from the contract
        ("precise", "/h3A", Decimal("-1234.56")),  # two's complement
        ("precise", "AA==", Decimal("0.00")),
        ("precise", "/w==", Decimal("-0.01")),
        ("string", "1234.56", Decimal("1234.56")),
        ("string", "-1234.56", Decimal("-1234.56")),
        ("string", "-0.015", Decimal("-0.02")),  # half-even to the column's scale
        ("string", "-0.025", Decimal("-0.02")),
        ("double", 1234.56, Decimal("1234.56")),
        ("double", -1234.56, Decimal("-1234.56")),
        ("double", 0.1 + 0.2, Decimal("0.30")),
        ("double", 2.675, Decimal("2.68")),  # half-even on the shortest repr: 2.675 -> 2.68
        ("double", 2.665, Decimal("2.66")),
        ("double", 12, Decimal("12.00")),
        # VariableScaleDecimal is self-describing, whatever the mode
        ("precise", {"scale": 2, "value": "AeJA"}, Decimal("1234.56")),
        ("string", {"scale": 3, "value": "/h3A"}, Decimal("-123.46")),  # -123.456 half-even
        # a number or a plain decimal string is unambiguous even under `precise`
        ("precise", 1234.56, Decimal("1234.56")),
        ("precise", "-1234.56", Decimal("-1234.56")),
    ],
)
def test_decimal_variants(mode, encoded, expected):
    value = invoice(encoded, mode)
    assert isinstance(value, Decimal)
    assert value == expected
    assert value.as_tuple().exponent == -2  # exact, at the column's scale
    assert str(value) == str(expected)


def test_decimal_scale_comes_from_the_contract_for_bare_precise():
    after = {"id": 1, "sale": 2, "product": 3, "quantity": -2.0, "unit_price": "ALxhAA=="}
    row = decode_row(SALE_LINE, b'{"id": 1}', envelope(after))
    assert row["unit_price"] == Decimal("1234.5600")  # base64(12345600), scale 4
    assert row["quantity"] == -2.0


def test_decimal_from_schema_parameters():
    schema = {
        "type": "struct",
        "fields": [
            {
                "type": "struct",
                "field": "after",
                "optional": True,
                "fields": [
                    {"type": "int64", "field": "id"},
                    {
                        "type": "bytes",
                        "field": "total_amount_cache",
                        "name": "org.apache.kafka.connect.data.Decimal",
                        "parameters": {"scale": "2", "connect.decimal.precision": "16"},
                    },
                    {
                        "type": "struct",
                        "field": "extra_amount",
                        "name": "io.debezium.data.VariableScaleDecimal",
                        "fields": [
                            {"type": "int32", "field": "scale"},
                            {"type": "bytes", "field": "value"},
                        ],
                    },
                ],
            },
            {"type": "string", "field": "op"},
        ],
    }
    payload = {
        "before": None,
        "after": {
            "id": 7,
            "total_amount_cache": "/h3A",
            "extra_amount": {"scale": 4, "value": "AeJA"},
        },
        "source": {"ts_ms": 1700000000000},
        "op": "c",
        "ts_ms": 1700000000000,
    }
    wrapped = json.dumps({"schema": schema, "payload": payload})
    env = decode_envelope(wrapped)
    assert env.after == {
        "id": 7,
        "total_amount_cache": Decimal("-1234.56"),
        "extra_amount": Decimal("12.3456"),
    }
    # the contract path reads the same (schema scale, here equal to the contract's)
    row = decode_row(INVOICE, b'{"id": 7}', wrapped, decimal_mode="string")
    assert row["total_amount_cache"] == Decimal("-1234.56")
    assert json.loads(row["_extra"]) == {"extra_amount": "12.3456"}


# -- hand-built envelopes: times -----------------------------------------------------------------


def test_bare_times():
    after = {
        "id": 1,
        "sale_date": 19723,  # Date: days since epoch
        "create_date": 1700000000123456,  # MicroTimestamp
        "write_date": -1,  # one µs before the epoch
    }
    row = decode_row(SALE, b'{"id": 1}', envelope(after))
    assert row["sale_date"] == date(2024, 1, 1)
    assert row["create_date"] == datetime(2023, 11, 14, 22, 13, 20, 123456)  # naive UTC
    assert row["write_date"] == datetime(1969, 12, 31, 23, 59, 59, 999999)
    assert row["_changed_at"] == utc(2023, 11, 14, 22, 13, 20)


@pytest.mark.parametrize(
    "iso,expected",
    [
        ("2024-03-01T10:15:30.123456Z", utc(2024, 3, 1, 10, 15, 30, 123456)),
        ("2024-03-01T12:15:30+02:00", utc(2024, 3, 1, 10, 15, 30)),
        ("2024-03-01T05:15:30.5-05:00", utc(2024, 3, 1, 10, 15, 30, 500000)),
    ],
)
def test_zoned_timestamp_to_utc(iso, expected):
    after = {"receipt_id": 1, "dc_code": "DC-EAST", "quantity": "2.500", "received_at": iso}
    row = decode_row(RECEIPTS, b'{"receipt_id": 1}', envelope(after), decimal_mode="string")
    assert row["received_at"] == expected
    assert row["received_at"].utcoffset().total_seconds() == 0
    assert row["quantity"] == Decimal("2.500")


def test_schema_time_types():
    def field(name, logical, typ):
        return {"type": typ, "field": name, "name": logical}

    schema = {
        "type": "struct",
        "fields": [
            field("micro", "io.debezium.time.MicroTimestamp", "int64"),
            field("milli", "io.debezium.time.Timestamp", "int64"),
            field("connect_ts", "org.apache.kafka.connect.data.Timestamp", "int64"),
            field("nano", "io.debezium.time.NanoTimestamp", "int64"),
            field("zoned", "io.debezium.time.ZonedTimestamp", "string"),
            field("day", "io.debezium.time.Date", "int32"),
            field("tod", "io.debezium.time.MicroTime", "int64"),
            {"type": "bytes", "field": "blob"},
        ],
    }
    value = {
        "micro": 1700000000123456,
        "milli": 1700000000123,
        "connect_ts": 1700000000123,
        "nano": 1700000000123456789,
        "zoned": "2023-11-14T23:13:20.123456+01:00",
        "day": 19723,
        "tod": 37230500000,
        "blob": "YmFy",
    }
    assert decode_with_schema(value, schema, "after") == {
        "micro": utc(2023, 11, 14, 22, 13, 20, 123456),
        "milli": utc(2023, 11, 14, 22, 13, 20, 123000),
        "connect_ts": utc(2023, 11, 14, 22, 13, 20, 123000),
        "nano": utc(2023, 11, 14, 22, 13, 20, 123456),
        "zoned": utc(2023, 11, 14, 22, 13, 20, 123456),
        "day": date(2024, 1, 1),
        "tod": time(10, 20, 30, 500000),
        "blob": b"bar",
    }


def test_schema_wrapped_times_on_contract_columns():
    schema = {
        "type": "struct",
        "fields": [
            {
                "type": "struct",
                "field": "after",
                "fields": [
                    {"type": "int64", "field": "id"},
                    {"type": "int32", "field": "sale_date", "name": "io.debezium.time.Date"},
                    {"type": "int64", "field": "create_date", "name": "io.debezium.time.Timestamp"},
                    {
                        "type": "int64",
                        "field": "write_date",
                        "name": "io.debezium.time.MicroTimestamp",
                    },
                ],
            }
        ],
    }
    payload = {
        "after": {
            "id": 5,
            "sale_date": 0,
            "create_date": 1700000000123,  # ms: the schema says so
            "write_date": 1700000000123456,
        },
        "source": {"ts_ms": 1},
        "op": "r",
    }
    row = decode_row(SALE, b'{"id": 5}', json.dumps({"schema": schema, "payload": payload}))
    assert row["_op"] == "r"
    assert row["sale_date"] == date(1970, 1, 1)
    assert row["create_date"] == datetime(2023, 11, 14, 22, 13, 20, 123000)
    assert row["write_date"] == datetime(2023, 11, 14, 22, 13, 20, 123456)


# -- ops, keys, tombstones -----------------------------------------------------------------------


def test_delete_keeps_only_the_key_and_tombstone():
    before = {"id": 9, "number": "", "party": 0, "total_amount_cache": "AA==", "state": ""}
    value = json.dumps(
        {"before": before, "after": None, "source": {"ts_ms": 5, "lsn": 99}, "op": "d"}
    )
    row = decode_row(INVOICE, b'{"id": 9}', value)
    assert row["_op"] == "d" and row["_is_tombstone"] is False
    assert row["id"] == 9
    assert all(row[c] is None for c in INVOICE.columns if c != "id")  # no type defaults
    tomb = decode_row(INVOICE, b'{"id": 9}', None)
    assert tomb["_op"] == "d" and tomb["_is_tombstone"] is True
    assert tomb["id"] == 9 and tomb["_changed_at"] is None and tomb["_key"] == '{"id":9}'


def test_schema_wrapped_key_and_tombstone():
    key = json.dumps({"schema": {"type": "struct"}, "payload": {"id": 3}})
    row = decode_row(INVOICE, key, json.dumps({"schema": None, "payload": None}))
    assert row["_is_tombstone"] is True and row["id"] == 3


def test_truncate_has_no_key():
    value = json.dumps({"source": {"ts_ms": 5, "lsn": 7, "txId": 8}, "op": "t", "ts_ms": 6})
    row = decode_row(INVOICE, None, value)
    assert (row["_op"], row["_key"], row["_source_lsn"], row["_source_tx_id"]) == ("t", None, 7, 8)
    assert all(row[c] is None for c in INVOICE.columns)


def test_snapshot_read_and_extra_columns():
    after = {"id": 4, "code": "EUR", "rounding": "0.01", "numeric_code": "978"}
    row = decode_row(
        CDC_BY_TOPIC["erp.public.currency_currency"], b'{"id": 4}', envelope(after, op="r")
    )
    assert (row["_op"], row["id"], row["code"]) == ("r", 4, "EUR")
    assert json.loads(row["_extra"]) == {"rounding": "0.01", "numeric_code": "978"}


# -- dead-letter reasons -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,value,mode,reason",
    [
        (b'{"id": 1}', b'{"op": "c", "after": {"id"', "precise", r"^value: bad JSON"),
        (b'{"id": 1', envelope({"id": 1}), "precise", r"^key: bad JSON"),
        (None, envelope({"id": 1}), "precise", r"^key: missing record key$"),
        (b'{"ref": 1}', None, "precise", r"^key\.id: missing from the record key$"),
        (b"[1]", envelope({"id": 1}), "precise", r"^key: expected a JSON object"),
        (b'{"id": 1}', envelope({"id": 1}, op="x"), "precise", r"^op: unknown operation 'x'$"),
        (b'{"id": 1}', json.dumps({"after": {"id": 1}}), "precise", r"^op: missing$"),
        (b'{"id": 1}', b"[1, 2]", "precise", r"^value: expected a JSON object"),
        (b'{"id": 1}', envelope(None, op="u"), "precise", r"^after: missing row image for op 'u'"),
        (
            b'{"id": 1}',
            envelope({"id": 1, "total_amount_cache": "12,50"}),
            "string",
            r"^after\.total_amount_cache: bad number '12,50'",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "total_amount_cache": "not a number!"}),
            "precise",
            r"^after\.total_amount_cache: bad number: neither base64",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "total_amount_cache": ""}),
            "precise",
            r"^after\.total_amount_cache: bad number: empty string",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "total_amount_cache": "NaN"}),
            "string",
            r"^after\.total_amount_cache: bad number",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "total_amount_cache": "1e20"}),
            "string",
            r"^after\.total_amount_cache: out of range for decimal\(16,2\)",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "total_amount_cache": [1]}),
            "string",
            r"^after\.total_amount_cache: expected a number, got array",
        ),
        (
            b'{"id": 1}',
            envelope({"id": "1"}),
            "precise",
            r"^after\.id: expected an integer, got str",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "party": 1.5}),
            "precise",
            r"^after\.party: expected an integer, got float",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "number": 12}),
            "precise",
            r"^after\.number: expected a string, got int",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "invoice_date": "yesterday"}),
            "precise",
            r"^after\.invoice_date: bad date 'yesterday'",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "create_date": "2024-13-01T00:00:00"}),
            "precise",
            r"^after\.create_date: bad timestamp",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "id_big": 1}, lsn="x"),
            "precise",
            r"^source\.lsn: expected an integer, got str",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 2**63}),
            "precise",
            r"^after\.id: out of range for bigint",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1}, lsn=2**63),
            "precise",
            r"^source\.lsn: out of range",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "create_date": 10**18}),
            "precise",
            r"^after\.create_date: timestamp out of range",
        ),
        (
            b'{"id": 1}',
            envelope({"id": 1, "invoice_date": 10**8}),
            "precise",
            r"^after\.invoice_date: date out of range",
        ),
    ],
)
def test_dead_letter_reasons_name_the_field(key, value, mode, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_row(INVOICE, key, value, decimal_mode=mode)


def test_zoned_timestamp_must_be_a_string():
    after = {"receipt_id": 1, "received_at": 1700000000000000}
    with pytest.raises(DecodeError, match=r"^after\.received_at: expected an ISO-8601"):
        decode_row(RECEIPTS, b'{"receipt_id": 1}', envelope(after))


def test_generic_decoder_errors():
    with pytest.raises(DecodeError, match=r"^value: bad JSON"):
        decode_envelope(b"{nope")
    with pytest.raises(DecodeError, match=r"^op: unknown operation 'z'"):
        decode_envelope({"op": "z"})
    with pytest.raises(DecodeError, match=r"^after\.amount: bad number: not base64"):
        decode_envelope(
            {
                "schema": {
                    "type": "struct",
                    "fields": [
                        {
                            "type": "struct",
                            "field": "after",
                            "fields": [
                                {
                                    "type": "bytes",
                                    "field": "amount",
                                    "name": "org.apache.kafka.connect.data.Decimal",
                                    "parameters": {"scale": "2"},
                                }
                            ],
                        }
                    ],
                },
                "payload": {"op": "c", "after": {"amount": "%%%"}},
            }
        )
    assert decode_envelope(None).is_tombstone


def test_decimal_mode_per_topic_prefix():
    connectors = {
        "erp": {"decimal.handling.mode": "precise"},
        "wms": {"decimal.handling.mode": "string"},
    }
    assert decimal_mode_for("wms.public.receipts", connectors) == "string"
    assert decimal_mode_for("erp.public.sale_line", connectors) == "precise"
    assert decimal_mode_for("other.public.x", connectors) == "precise"
    assert decimal_mode_for("erp.public.sale_line", {}) == "precise"
