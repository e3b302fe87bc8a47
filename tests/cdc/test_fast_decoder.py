"""`TableDecoder.fast` (the generated decoder landing calls) against `TableDecoder.decode`.

`fast` decodes the common record in one generated function and hands anything else to `decode`;
both must give the same row, or the same `DecodeError`, for every record. Here every contract
table, in every decimal mode, gets a well-formed record and then that record with each column,
the key, the source and the envelope replaced by values of every JSON type, out of range, absent
or extra; the test also checks that `fast` decoded the well-formed records itself.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipelines.lib.cdc import decode as decode_module
from pipelines.lib.cdc.decode import DECIMAL_MODES, DecodeError, TableDecoder
from pipelines.lib.coltypes import decimal_type
from pipelines.lib.contracts import CDC_TABLES

# Values of every JSON type, at and beyond the edges the converters check.
PALETTE: list[Any] = [
    None,
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    10**40,
    1.5,
    -0.0,
    1e300,
    "",
    "x",
    "QbOI",
    "AQ==",
    "12.50",
    "-3",
    "1e3",
    "NaN",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00+14:00",
    True,
    False,
    {},
    {"scale": 2, "value": "AQ=="},
    [],
    [1, "a"],
    253_402_300_799_999_999,
    253_402_300_800_000_000,
    2_932_897,
]


def _good(kind: str, mode: str) -> Any:
    if decimal_type(kind):
        return "QbOI" if mode == "precise" else "12.50"
    return {
        "bigint": 7,
        "integer": 7,
        "varchar": "a",
        "double": 1.5,
        "boolean": True,
        "date": 19_000,
        "timestamp": 1_700_000_000_000_000,
        "timestamptz": "2026-01-01T00:00:00Z",
        "json": {"a": [1, 2]},
    }[kind]


def _record(table, mode: str) -> tuple[dict, dict]:
    after = {name: _good(kind, mode) for name, kind in table.columns.items()}
    after[table.primary_key] = 7
    source = {"lsn": 100, "ts_ms": 1_770_212_038_000, "txId": 5, "schema": "public"}
    value = {"before": None, "after": after, "source": source, "op": "c", "ts_ms": 1}
    return {table.primary_key: 7}, value


def _outcome(fn, key, value) -> Any:
    try:
        return ("row", fn(key, value))
    except DecodeError as exc:
        return ("error", str(exc))


def _variants(table, key: dict, value: dict):
    yield key, value
    for name in table.columns:
        for v in PALETTE:
            changed = copy.deepcopy(value)
            changed["after"][name] = v
            yield key, changed
        gone = copy.deepcopy(value)
        del gone["after"][name]
        yield key, gone
    for extra in ({"zz": 1}, {"zz": 1, "aa": None}):
        changed = copy.deepcopy(value)
        changed["after"].update(extra)
        yield key, changed
    for field in ("lsn", "ts_ms", "txId"):
        for v in [*PALETTE, "absent"]:
            changed = copy.deepcopy(value)
            if v == "absent":
                del changed["source"][field]
            else:
                changed["source"][field] = v
            yield key, changed
    for field, options in (
        ("op", ["c", "u", "r", "d", "t", "m", "x", None, 1, "absent"]),
        ("source", [None, {}, [], "x", "absent"]),
        ("after", [None, {}, [], "x", "absent"]),
        ("ts_ms", [None, 0, 2, 2**63, "x", "absent"]),
        ("payload", [None, {}]),
        ("schema", [None, {}]),
    ):
        for v in options:
            changed = copy.deepcopy(value)
            if v == "absent":
                changed.pop(field, None)
            else:
                changed[field] = v
            yield key, changed
    for other_key in (None, {}, {table.primary_key: None}, {table.primary_key: "x"}, {"zz": 1}):
        yield other_key, value
    yield {"schema": None, "payload": key}, value
    yield key, {"schema": None, "payload": value}
    for not_a_dict in (None, [], "x", 1):
        yield key, not_a_dict


@pytest.mark.parametrize("mode", DECIMAL_MODES)
def test_fast_decoder_gives_the_reference_rows_and_errors(mode):
    compared = 0
    for table in CDC_TABLES:
        decoder = TableDecoder(table, mode)
        key, value = _record(table, mode)
        for k, v in _variants(table, key, value):
            fast = _outcome(decoder.fast, k, v)
            assert fast == _outcome(decoder.decode, k, v), (table.topic, k, v)
            compared += 1
        # the well-formed record (and one with an extra column) never reaches `decode`
        calls: list = []
        fast_only = decode_module._fast_decoder(
            decoder.names,
            list(table.columns.values()),
            [c for _, c in decoder._bare],
            decoder.columns,
            lambda *a, _calls=calls: _calls.append(a),
        )
        extra = copy.deepcopy(value)
        extra["after"]["zz"] = {"nested": [1.5]}
        assert fast_only(key, value) == decoder.decode(key, value)
        assert fast_only(key, extra)[7] == '{"zz":{"nested":[1.5]}}'
        assert calls == []
    assert compared > 1000
