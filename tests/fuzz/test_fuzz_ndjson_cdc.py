"""Property-based tests (hypothesis) of the NDJSON readers, the CDC file reader and the Debezium
decoder (DESIGN §12).

Valid inputs are generated from the contracts (Debezium envelopes of every variant: bare and
schema-wrapped; precise, string and double decimals and VariableScaleDecimal; ZonedTimestamp,
MicroTimestamp, Timestamp and Date; tombstones; c/u/d/r/t; unknown extra fields. CDC file lines;
Shopify refunds; returns SaaS webhooks), then mutated: bytes, encodings (of a line, or the whole
file as UTF-16/UTF-32/UTF-8 with a BOM), structure, and values at their types' limits. Properties:

- the reader never raises;
- every line is accounted for: blank + landed + dead-lettered + skipped as a duplicate = lines read;
- every line the mutation did not touch lands exactly as it does unmutated (a CDC line can lose
  its position to a mutated line before it that claims the same position: then it is the
  duplicate);
- valid inputs land, and decode to the values generated (round trip);
- the NDJSON fast path and the reference converter give the same rows and dead letters.

CI runs the `ci` profile of tests/conftest.py (200 derandomized examples per test); `make fuzz`
the long one.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from pipelines.lib.cdc.files import land_cdc_files, parse_line
from pipelines.lib.cdc.land import ParsedRecord, decode_batch
from pipelines.lib.coltypes import decimal_type
from pipelines.lib.contracts import CDC_TABLES, FILE_SOURCES, CdcTable
from pipelines.lib.files.ndjson import LineTally, land_ndjson
from pipelines.lib.warehouse import connect

SOURCES = {fs.raw_table: fs for fs in FILE_SOURCES}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DATE = date(1970, 1, 1)

# -- values at their types' limits, for mutations ------------------------------------------------

LIMITS = [
    None, True, False, 0, -1, "", " ", "x" * 1000, [], {}, [[[[[[]]]]]], {"a": {"b": {"c": {}}}},
    2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64,
    10**30, 1e308, -1e308, 5e-324, 0.1, 1.5,
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z", "2024-02-30T00:00:00Z", "2024-05-01T25:00:00Z", "yesterday",
    "NaN", "Infinity", "-0", "1e5", "1e999999999", "9" * 40, "99999999999999.99995", "12.345678",
    base64.b64encode((10**39).to_bytes(17, "big")).decode(), "AA==", "////", "not base64!",
    {"scale": 10**9, "value": "AQ=="}, {"scale": -(10**9), "value": "AQ=="},
    {"scale": 2, "value": base64.b64encode(b"\x7f" * 90).decode()}, {"scale": "2", "value": 1},
    "\u0000", "\ud7ff\ue000", "caf\u00e9 \u2603 \U0001f600",
]  # fmt: skip

# The limits that matter to a value, by what it looks like (a mutation replaces a value with one
# of its kind's limits more often than with any limit, so that 200 examples reach them)
TIME_LIMITS = [v for v in LIMITS if isinstance(v, str) and v[:4].isdigit() and "T" in v]
INT_LIMITS = [v for v in LIMITS if type(v) is int] + ["9223372036854775808", "-1", 1e308, "x"]
NUMBER_LIMITS = [v for v in LIMITS if isinstance(v, str) and v[:1] in "-19N" and "T" not in v]
NUMBER_LIMITS += ["1" * 15 + "." + "9" * 5, 1e308, 5e-324, 10**30]
BYTES_LIMITS = [v for v in LIMITS if isinstance(v, str) and (v.endswith("=") or "/" in v)]
BYTES_LIMITS += [v for v in LIMITS if isinstance(v, dict) and "scale" in v]


def limits_for(value) -> list:
    if type(value) is int:
        return INT_LIMITS
    if isinstance(value, float):
        return [1e308, -1e308, 5e-324, 2**64, "1.5"]
    if isinstance(value, dict) and "scale" in value:
        return BYTES_LIMITS
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
            return TIME_LIMITS
        except ValueError:
            pass
        if value[-1:] == "=" or "/" in value:
            return BYTES_LIMITS
        try:
            Decimal(value)
            return NUMBER_LIMITS + BYTES_LIMITS
        except ArithmeticError:
            pass
    return LIMITS


# A JSON literal json.dumps cannot write from a value (written into the text instead)
LITERALS = ["NaN", "-Infinity", "1e999999999", "1" * 30, "-0.0", "1E-400", "[" * 1200 + "]" * 1200]


@functools.cache  # a strategy is built (and validated) once, not per draw
def json_values(low: int = -(2**70), high: int = 2**70) -> st.SearchStrategy:
    """Unknown fields vendors add: any JSON value (integers within [low, high]: orjson, which
    reads the CDC files, reads integers beyond 64 bits as floats)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(low, high),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=4,
    )


# -- mutations of a file's lines ----------------------------------------------------------------


def _replace_somewhere(obj, data, value_strategy=None):
    """Replace one value (picked by `data`) anywhere inside a parsed JSON object: by a draw of
    `value_strategy`, or (None) by one of the limits of the value's own kind."""
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(obj, ())
    path = data.draw(st.sampled_from(paths[1:] or paths), label="path")
    node = obj
    for key in path[:-1]:
        node = node[key]
    if value_strategy is None:
        value_strategy = st.sampled_from(limits_for(node[path[-1]] if path else obj))
    if not path:
        return data.draw(value_strategy)
    node[path[-1]] = data.draw(value_strategy, label="value")
    return obj


def mutate_line(line: bytes, data) -> bytes:
    """One mutation of one line: bytes, encoding, structure or a value at a type's limit."""
    kind = data.draw(
        st.sampled_from(
            [
                "own-limit",
                "own-limit",
                "own-limit",
                "byte",
                "insert",
                "delete",
                "truncate",
                "latin1",
                "bad-utf8",
                "bom",
                "limit",
                "literal",
                "drop-key",
                "type",
                "wrap",
                "extra-field",
                "blank",
            ]
        ),
        label="mutation",
    )
    if kind in ("byte", "insert", "delete", "truncate") and line:
        at = data.draw(st.integers(0, len(line) - 1), label="at")
        byte = bytes([data.draw(st.integers(0, 255), label="byte")])
        return {
            "byte": line[:at] + byte + line[at + 1 :],
            "insert": line[:at] + byte + line[at:],
            "delete": line[:at] + line[at + 1 :],
            "truncate": line[:at],
        }[kind]
    if kind == "latin1":
        text = line.decode()
        return text.encode("latin-1", "replace") if text.isascii() is False else line + b"\xe9"
    if kind == "bad-utf8":
        at = data.draw(st.integers(0, len(line)), label="at")
        bad = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
        return line[:at] + bad + line[at:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + line
    if kind == "blank":
        return data.draw(st.sampled_from([b"", b"   ", b"\t\r"]))
    obj = json.loads(line)
    if kind == "own-limit":  # any number of the line's values, each by one of its kind's limits
        for path, key in list(_dict_paths(obj)):
            node = _at(obj, path)
            value = node[key]
            if not isinstance(value, dict | list) and data.draw(st.integers(0, 3)) == 0:
                node[key] = data.draw(st.sampled_from(limits_for(value)), label=str(key))
    elif kind == "limit":
        obj = _replace_somewhere(obj, data, st.sampled_from(LIMITS))
    elif kind == "literal":
        obj = _replace_somewhere(obj, data, st.just("\x00LITERAL"))
        literal = data.draw(st.sampled_from(LITERALS), label="literal")
        return json.dumps(obj, ensure_ascii=False).replace('"\\u0000LITERAL"', literal).encode()
    elif kind == "drop-key":
        victims = [p for p in _dict_paths(obj)]
        path, key = data.draw(st.sampled_from(victims), label="drop")
        del _at(obj, path)[key]
    elif kind == "type":
        obj = _replace_somewhere(obj, data, json_values())
    elif kind == "wrap":
        obj = data.draw(st.sampled_from([[obj], "text", 42, None]), label="wrapped")
    elif kind == "extra-field":
        path, _ = data.draw(st.sampled_from(list(_dict_paths(obj))), label="where")
        _at(obj, path)[data.draw(st.text(min_size=1, max_size=8))] = data.draw(json_values())
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _dict_paths(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path, k
            yield from _dict_paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _dict_paths(v, (*path, i))


def _at(obj, path):
    for key in path:
        obj = obj[key]
    return obj


def mutate_file(lines: list[bytes], data) -> tuple[bytes, list[bytes], dict[int, int], list[int]]:
    """(file bytes, its lines, original index -> new index of the untouched lines, indexes of the
    new lines the mutation made). A line mutation, or the whole file in another encoding."""
    if data.draw(st.integers(0, 5), label="whole file") == 0:
        codec = data.draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-8-sig"]))
        text = b"".join(line + b"\n" for line in lines).decode()
        bom = b"\xfe\xff" if codec == "utf-16-be" else b""
        return bom + text.encode(codec), lines, {i: i for i in range(len(lines))}, []
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    new = mutate_line(lines[i], data).split(b"\n")
    out = lines[:i] + new + lines[i + 1 :]
    untouched = {k: (k if k < i else k + len(new) - 1) for k in range(len(lines)) if k != i}
    return b"".join(line + b"\n" for line in out), out, untouched, list(range(i, i + len(new)))


def is_blank(line: bytes) -> bool:
    return not line.strip()


# -- NDJSON drops: returns SaaS webhooks and Shopify refunds ---------------------------------------

iso_utc = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
money = st.decimals(min_value=-(10**13), max_value=10**13, places=4, allow_nan=False).map(str)
bigint = st.integers(-(2**63), 2**63 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
text = st.text(max_size=12)


def with_extras(fixed: dict) -> st.SearchStrategy:
    extras = st.dictionaries(st.text(min_size=1, max_size=6), json_values(), max_size=2)
    return st.tuples(st.fixed_dictionaries(fixed), extras).map(
        lambda pair: {**{k: v for k, v in pair[1].items() if k not in pair[0]}, **pair[0]}
    )


def iso(dt: datetime, offset_minutes: int) -> str:
    return dt.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()


zoned = st.tuples(
    st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(-14 * 60, 14 * 60),
).map(lambda p: iso(*p))

webhook_line_item = with_extras({
    "line_item_id": bigint, "provider_line_item_id": bigint, "sku": text, "quantity": int32,
    "price": money, "refund": money, "return_reason": text, "parent_return_reason": text,
})  # fmt: skip
webhooks = with_extras({
    "webhook_id": st.uuids().map(str),
    "topic": st.sampled_from(["return.created", "return.updated", "return.closed"]),
    "delivered_at": zoned,
    "payload": with_extras({
        "id": bigint, "rma": text.map(lambda t: "LR-" + t), "state": text, "created_at": zoned,
        "updated_at": zoned, "order_id": bigint, "order_name": text, "currency": text,
        "outcome": text, "total_refund": money, "tracking_number": text,
        "line_items": st.lists(webhook_line_item, max_size=2),
    }),
})  # fmt: skip
refunds = with_extras({
    "id": bigint, "order_id": bigint, "created_at": zoned, "processed_at": zoned, "note": text,
    "refund_line_items": st.lists(with_extras({
        "id": bigint, "line_item_id": bigint, "quantity": int32, "restock_type": text,
        "subtotal": money, "total_tax": money,
        "line_item": with_extras({"id": bigint, "sku": text, "price": money}),
    }), max_size=2),
    "transactions": st.lists(with_extras({
        "id": bigint, "kind": st.sampled_from(["refund", "sale"]), "status": text,
        "amount": money, "currency": text, "gateway": text,
    }), max_size=2),
})  # fmt: skip


@pytest.fixture(scope="module")
def memory_warehouse():
    con = connect(":memory:")
    yield con
    con.close()


def read_ndjson(table: str, path: Path, fast: bool) -> tuple[dict, dict, list, LineTally]:
    """Run the NDJSON reader over one file without a warehouse: line number -> row values
    (without the position columns), line number -> dead-letter reason, and the line tally."""
    fs = SOURCES[table]
    tables, letters = [], []

    def bury(batch):
        letters.extend(batch)
        return len(batch)

    tally = LineTally()
    rows, dead = land_ndjson(
        None, fs, path, "rel", "sha", EPOCH, tables.append, bury, 7, fast=fast, counts=tally
    )
    landed = {}
    for table_ in tables:
        for row in table_.to_pylist():
            number = row.pop("_row_number")
            for meta in ("_file", "_file_sha256", "_ingested_at"):
                row.pop(meta)
            landed[number] = row
    reasons = {int(d.position.rsplit(":", 1)[1]): d.error for d in letters}
    assert (rows, dead) == (len(landed), len(reasons))
    return landed, reasons, tables, tally


def check_ndjson(table: str, records: list[dict], data, tmp_path: Path, con) -> None:
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in records]
    base = tmp_path / "base.ndjson"
    base.write_bytes(b"".join(line + b"\n" for line in lines))
    landed, reasons, _, _ = read_ndjson(table, base, fast=True)
    assert reasons == {} and sorted(landed) == list(range(1, len(lines) + 1))  # valid inputs land

    blob, new_lines, untouched, touched = mutate_file(lines, data)
    note(f"mutated lines: {[new_lines[i][:300] for i in touched]}")
    path = tmp_path / "mutated.ndjson"
    path.write_bytes(blob)
    outcome = {}
    for fast in (True, False):
        got_rows, got_reasons, tables, tally = read_ndjson(table, path, fast)  # never raises
        outcome[fast] = (got_rows, got_reasons)
        blank = sum(is_blank(line) for line in new_lines)
        # accounting: every line read is blank, landed or a dead letter
        assert tally.lines_read == len(new_lines) and tally.blank_lines == blank
        assert len(got_rows) + len(got_reasons) + blank == tally.lines_read
        # every line the mutation did not touch lands exactly as it does unmutated
        for old, new in untouched.items():
            assert got_rows.get(new + 1) == landed[old + 1], (old, new)
        if not fast:
            continue
        # ... and what lands can be stored (the reference's rows are asserted equal below)
        con.execute("begin")
        try:
            for arrow in tables:
                con.register("__fuzz_rows", arrow)
                con.execute(f"insert into raw.{table} by name select * from __fuzz_rows")
                con.unregister("__fuzz_rows")
        finally:
            con.execute("rollback")
    assert outcome[True] == outcome[False]  # the fast path is the reference's equal


@given(records=st.lists(webhooks, min_size=1, max_size=4), data=st.data())
def test_fuzz_returns_saas_webhooks(records, data, tmp_path_factory, memory_warehouse):
    check_ndjson(
        "returns_saas_webhooks", records, data, tmp_path_factory.mktemp("w"), memory_warehouse
    )


@given(records=st.lists(refunds, min_size=1, max_size=4), data=st.data())
def test_fuzz_shopify_refunds(records, data, tmp_path_factory, memory_warehouse):
    check_ndjson("shopify_refunds", records, data, tmp_path_factory.mktemp("r"), memory_warehouse)


# -- Debezium envelopes -----------------------------------------------------------------------

MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // timedelta(
    microseconds=1
)


def b64(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)).decode()


@functools.cache
@st.composite
def column_value(draw, kind: str, wrapped: bool, mode: str):
    """(JSON value as Debezium writes it, its schema field or None, the value it decodes to)."""
    dec = decimal_type(kind)
    if dec:
        precision, scale = dec
        digits = min(precision, 15) if mode == "double" else precision
        unscaled = draw(st.integers(-(10**digits) + 1, 10**digits - 1))
        value = Decimal(unscaled).scaleb(-scale)
        style = draw(st.sampled_from([mode, "variable"]))
        if style == "variable":
            shift = draw(st.integers(0, scale))  # a narrower scale: exact
            unscaled -= unscaled % (10**shift) if unscaled >= 0 else -((-unscaled) % (10**shift))
            value = Decimal(unscaled).scaleb(-scale)
            vs = {"scale": scale - shift, "value": b64(unscaled // 10**shift)}
            schema = {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}
            return vs, schema, value
        if style == "precise":
            schema = {
                "type": "bytes",
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": str(scale)},
            }
            return b64(unscaled), schema, value
        if style == "string":
            return str(value), {"type": "string"}, value
        return float(value), {"type": "double"}, value
    if kind == "bigint":
        v = draw(st.integers(-(2**63), 2**63 - 1))
        return v, {"type": "int64"}, v
    if kind == "varchar":
        v = draw(st.text(max_size=15))
        return v, {"type": "string"}, v
    if kind == "double":
        v = draw(st.floats(allow_nan=False, allow_infinity=False))
        return v, {"type": "double"}, v
    if kind == "date":
        d = draw(st.dates())
        days = (d - EPOCH_DATE).days
        return days, {"type": "int32", "name": "io.debezium.time.Date"}, d
    if kind == "timestamp":
        if wrapped and draw(st.booleans()):  # Timestamp: milliseconds
            ms = draw(st.integers(MIN_US // 1000 + 1, MAX_US // 1000))
            dt = datetime(1970, 1, 1) + timedelta(milliseconds=ms)
            return ms, {"type": "int64", "name": "io.debezium.time.Timestamp"}, dt
        us = draw(st.integers(MIN_US, MAX_US))
        dt = datetime(1970, 1, 1) + timedelta(microseconds=us)
        return us, {"type": "int64", "name": "io.debezium.time.MicroTimestamp"}, dt
    if kind == "timestamptz":
        text_ = draw(zoned)
        value = datetime.fromisoformat(text_).astimezone(UTC)
        return text_, {"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, value
    raise AssertionError(kind)


CDC_EXTRAS = st.dictionaries(
    st.text(min_size=1, max_size=6), json_values(-(2**63), 2**64 - 1), max_size=2
)
OPS = st.sampled_from(["c", "u", "r", "d", "t", "tombstone"])
TABLES = st.sampled_from(CDC_TABLES)


@st.composite
def kafka_records(draw, offset: int, erp_mode: str):
    """(Kafka record as a CDC file line's object, expected decoded columns or a marker); bare
    decimals of ERP topics in `erp_mode`, of WMS topics as strings (`connectors`)."""
    table: CdcTable = draw(TABLES)
    mode = erp_mode if table.prefix == "erp" else "string"
    wrapped = draw(st.booleans())
    op = draw(OPS)
    after, fields, expected = {}, [], {}
    for name, kind in table.columns.items():
        if name != table.primary_key and draw(st.integers(0, 5)) == 0:
            continue  # a column left out (null)
        value, schema, decoded = draw(column_value(kind, wrapped, mode))
        after[name] = value
        fields.append({"field": name, **schema})
        expected[name] = decoded
    extras = draw(CDC_EXTRAS)
    extras = {k: v for k, v in extras.items() if k not in table.columns}
    after.update(extras)
    pk = table.primary_key
    key = {pk: after[pk]}
    source = {"ts_ms": draw(st.integers(1, 2**41)), "lsn": draw(st.integers(0, 2**62))}
    source.update(
        draw(
            st.fixed_dictionaries(
                {}, optional={"txId": st.integers(0, 2**40), "db": text, "schema": text}
            )
        )
    )
    if op == "tombstone":
        value, expected = None, {"_tombstone": True, pk: key[pk]}
    else:
        env = {"op": op, "source": source, "ts_ms": source["ts_ms"] + 1}
        if op in ("c", "u", "r"):
            env["before"] = None if op != "u" else dict(after)
            env["after"] = after
            expected = {"_op": op, "_extra": extras or None, **expected}
        elif op == "d":
            env["before"], env["after"] = after, None
            expected = {"_op": "d", pk: key[pk]}
        else:
            env["before"] = env["after"] = None
            key = None
            expected = {"_op": "t"}
        if draw(st.booleans()):
            env["transaction"] = {"id": "tx", "total_order": 1}
        value = env
        if wrapped:
            schema = {
                "type": "struct",
                "fields": [
                    {"field": "before", "type": "struct", "fields": fields, "optional": True},
                    {"field": "after", "type": "struct", "fields": fields, "optional": True},
                ],
            }
            value = {"schema": schema, "payload": env}
    record = {"topic": table.topic, "partition": 0, "offset": offset, "key": key, "value": value}
    return record, expected


def normalise(table: CdcTable, row: dict) -> dict:
    out = {k: v for k, v in row.items() if k in table.columns}
    out["_op"], out["_tombstone"] = row["_op"], row["_is_tombstone"]
    out["_extra"] = json.loads(row["_extra"]) if row["_extra"] else None
    return out


def check_expected(table: CdcTable, row: dict, expected: dict) -> None:
    got = normalise(table, row)
    if expected.get("_tombstone"):
        assert (
            got["_tombstone"]
            and got["_op"] == "d"
            and got[table.primary_key] == expected[table.primary_key]
        )
        return
    assert got["_op"] == expected["_op"] and not got["_tombstone"]
    for name in table.columns:
        want = expected.get(name)
        if isinstance(want, datetime) and want.tzinfo is None:
            have = got[name]
            assert have is not None and have.replace(tzinfo=None) == want, name
        else:
            assert got[name] == want, (name, got[name], want)
    if expected["_op"] in ("c", "u", "r") and expected["_extra"]:
        assert got["_extra"] == json.loads(json.dumps(expected["_extra"]))


def connectors(erp_mode: str) -> dict:
    return {"erp": {"decimal.handling.mode": erp_mode}, "wms": {"decimal.handling.mode": "string"}}


def draw_records(data) -> tuple[list, dict]:
    erp_mode = data.draw(st.sampled_from(["precise", "string", "double"]), label="erp mode")
    n = data.draw(st.integers(1, 4), label="records")
    drawn = [data.draw(kafka_records(k, erp_mode), label=f"record {k}") for k in range(n)]
    return drawn, connectors(erp_mode)


def decode_lines(lines: list[bytes], connectors) -> tuple[dict, dict, int]:
    """The pure path (no warehouse): position -> decoded row, position or line -> reason,
    repeats."""
    records, letters = [], {}
    for number, line in enumerate(lines, 1):
        if is_blank(line):
            continue
        item = parse_line(line, "sha", number)
        if type(item) is ParsedRecord:
            records.append(item)
        else:
            letters[item.position] = item.error
    decoded = decode_batch(records, connectors)
    rows = {}
    for arrow in decoded.tables.values():
        for row in arrow.to_pylist():
            rows[(row["_topic"], row["_partition"], row["_offset"])] = row
    for _pos, _label, letter in decoded.letters:
        letters[letter.position] = letter.error
    return rows, letters, decoded.skipped


@given(data=st.data())
def test_fuzz_debezium_envelopes_decode_exactly(data):
    """Every variant of envelope decodes to the values generated; mutated at their values'
    limits, the decoder never raises and every record is a row, a dead letter or a repeat."""
    drawn, modes = draw_records(data)
    n = len(drawn)
    lines = [json.dumps(rec, ensure_ascii=False).encode() for rec, _ in drawn]
    rows, letters, repeats = decode_lines(lines, modes)
    assert letters == {} and repeats == 0
    for rec, expected in drawn:
        table = next(t for t in CDC_TABLES if t.topic == rec["topic"])
        check_expected(table, rows[(rec["topic"], 0, rec["offset"])], expected)

    # values at the limits, unknown fields, wrong types: never raises, all accounted for
    i = data.draw(st.integers(0, n - 1), label="mutated")
    rec = json.loads(lines[i])
    strategy = data.draw(st.sampled_from([None, None, st.sampled_from(LIMITS), json_values()]))
    rec = _replace_somewhere(rec, data, strategy)
    lines[i] = json.dumps(rec, ensure_ascii=False).encode()
    got_rows, got_letters, got_repeats = decode_lines(lines, modes)
    assert len(got_rows) + len(got_letters) + got_repeats == n
    for k in range(n):
        if k != i:
            pos = (drawn[k][0]["topic"], 0, k)
            if pos in got_rows:
                assert got_rows[pos] == rows[pos]
            else:  # the mutated record moved to this position before it
                assert i < k and got_repeats


@pytest.fixture(scope="module")
def cdc_warehouse():
    con = connect(":memory:")
    yield con
    con.close()


def reset(con) -> None:
    for table in CDC_TABLES:
        con.execute(f"delete from raw.{table.raw_table}")
    for meta in ("dead_letters", "stream_offsets", "files_landed", "file_hashes"):
        con.execute(f"delete from meta.{meta}")


@given(data=st.data())
def test_fuzz_cdc_file_lines(data, tmp_path_factory, cdc_warehouse):
    """CDC files: generated valid lines, then one mutated (or the whole file re-encoded), landed
    for real. Never raises; every line accounted for; untouched lines land as they decode
    unmutated."""
    drawn, modes = draw_records(data)
    lines = [json.dumps(rec, ensure_ascii=False).encode() for rec, _ in drawn]
    base_rows, base_letters, _ = decode_lines(lines, modes)
    assert base_letters == {}

    blob, new_lines, untouched, touched = mutate_file(lines, data)
    note(f"mutated lines: {[new_lines[i][:300] for i in touched]}")
    landing = tmp_path_factory.mktemp("cdc")
    (landing / "cdc").mkdir()
    (landing / "cdc" / "a.ndjson").write_bytes(blob)
    con = cdc_warehouse
    reset(con)
    summary = land_cdc_files(con, landing, progress=False, connectors=modes)  # never raises
    assert summary.files_landed == ["cdc/a.ndjson"] and summary.files_ignored == []
    # accounting
    assert summary.lines_read == len(new_lines)
    assert summary.blank_lines == sum(is_blank(line) for line in new_lines)
    assert summary.unaccounted == 0
    # untouched lines land as they decode unmutated (unless a mutated line took their position
    # first: then they are the duplicate)
    claimed = {}
    for index in touched:
        item = parse_line(new_lines[index], "sha", index + 1)
        if type(item) is ParsedRecord:
            claimed[(item.topic, item.partition, item.offset)] = index
    landed = {}
    for table in CDC_TABLES:
        arrow = con.sql(
            f"select * exclude (_ingested_at) from raw.{table.raw_table}"
        ).to_arrow_table()
        for row in arrow.to_pylist():
            landed[(row["_topic"], row["_partition"], row["_offset"])] = row
    for old, new in untouched.items():
        pos = (drawn[old][0]["topic"], 0, old)
        if claimed.get(pos, len(new_lines)) < new:
            continue
        assert landed[pos] == base_rows[pos], pos
