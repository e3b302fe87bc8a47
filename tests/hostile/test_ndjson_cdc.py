"""Hostile input for the NDJSON drops (returns SaaS webhooks, Shopify refunds), the CDC files and
the Debezium decoder (DESIGN §12), each case with its exact outcome: which lines land (and what
they hold), which are dead letters with which reason, what is not read.

Covers issue 19's cases: a webhook with `created_at` `0001-01-01T00:00:00+14:00` (OverflowError,
every run failed), a directory named `x.ndjson` in `cdc/` (IsADirectoryError, every run failed),
UTF-16 files handled per source; and more of the same kind: times, numbers and integers at and
beyond their types' limits, NaN and Infinity, bytes that are not UTF-8, byte order marks, deep
nesting, huge values, FIFOs and symbolic links.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.lib.cdc.files import IgnoredFile, land_cdc_files
from pipelines.lib.files import land_files
from pipelines.lib.warehouse import connect

# -- NDJSON drops -------------------------------------------------------------------------------


def webhook(n: int, **payload) -> dict:
    body = {
        "id": 1000 + n, "rma": f"LR-{n}", "state": "open", "created_at": "2024-05-01T09:00:00Z",
        "updated_at": "2024-05-01T11:30:00+02:00", "order_id": 450789469, "currency": "USD",
        "total_refund": "19.90", "line_items": [
            {"line_item_id": 1, "provider_line_item_id": 7, "sku": "S-1", "quantity": 1,
             "price": "19.90", "refund": "19.90", "return_reason": "damaged"},
        ],
    }  # fmt: skip
    body.update(payload)
    return {
        "webhook_id": f"w-{n}",
        "topic": "return.updated",
        "delivered_at": "2024-05-01T10:00:00Z",
        "payload": body,
    }


def text(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)


def with_item(n: int, **item) -> dict:
    hook = webhook(n)
    hook["payload"]["line_items"][0].update(item)
    return hook


def raw_payload(n: int, field: str, literal: str) -> str:
    """A webhook whose payload field is the JSON literal given (json.dumps cannot write some)."""
    return text(webhook(n, **{field: "__HERE__"})).replace('"__HERE__"', literal)


TIME_RANGE = " (not in years 1-9999 in UTC)"
DEEP = "[" * 100_000 + "]" * 100_000

# (line, expected): "land" or the dead letter's exact reason (a str ending in "..." is a prefix)
WEBHOOK_CASES: list[tuple[str | bytes, str]] = [
    (text(webhook(1)), "land"),
    # issue 19: this one failed every run
    (
        text(webhook(2, created_at="0001-01-01T00:00:00+14:00")),
        "time out of range in 'payload.created_at': '0001-01-01T00:00:00+14:00'" + TIME_RANGE,
    ),
    (
        text(webhook(3, updated_at="9999-12-31T23:59:59-14:00")),
        "time out of range in 'payload.updated_at': '9999-12-31T23:59:59-14:00'" + TIME_RANGE,
    ),
    (text(webhook(4, created_at="0001-01-01T00:00:00Z")), "land"),  # the first representable
    (text(webhook(5, created_at="9999-12-31T23:59:59.999999+00:00")), "land"),  # and the last
    (
        text(webhook(6, created_at="2024-02-30T00:00:00Z")),
        "bad time in 'payload.created_at': '2024-02-30T00:00:00Z'",
    ),
    # numbers: beyond DECIMAL(18,4), not decimal, NaN and Infinity
    (
        raw_payload(7, "total_refund", "1e999999999"),
        "number out of range in 'payload.total_refund': '1E+999999999'",
    ),
    (
        text(webhook(8, total_refund="1" * 41)),
        "number out of range in 'payload.total_refund': '" + "1" * 37 + "...'",
    ),  # shortened
    (
        text(webhook(9, total_refund="99999999999999.99995")),
        "number out of range in 'payload.total_refund': '99999999999999.99995'",
    ),  # rounds up
    (text(webhook(10, total_refund="99999999999999.99994")), "land"),  # rounds down: fits
    (text(webhook(11, total_refund="1e5")), "bad number in 'payload.total_refund': '1e5'"),
    (text(webhook(12, total_refund="NaN")), "bad number in 'payload.total_refund': 'NaN'"),
    (raw_payload(13, "total_refund", "NaN"), "bad JSON: NaN is not a JSON value"),
    (raw_payload(14, "note", "-Infinity"), "bad JSON: -Infinity is not a JSON value"),
    (raw_payload(15, "total_refund", "1e-999999999"), "land"),  # rounds to 0.0000
    # integers beyond BIGINT / INTEGER
    (
        raw_payload(16, "id", "9223372036854775808"),
        "integer out of range in 'payload.id': 9223372036854775808",
    ),
    (raw_payload(17, "id", "-9223372036854775808"), "land"),  # the smallest bigint
    (raw_payload(18, "id", "1e999999"), "integer out of range in 'payload.id': '1E+999999'"),
    (
        raw_payload(19, "id", "1" * 5000),
        "bad JSON: Exceeds the limit (4300 digits) for integer string conversion ...",
    ),
    (
        text(with_item(20, quantity=2**31)),
        "integer out of range in 'payload.line_items[0].quantity': 2147483648",
    ),
    (text(with_item(21, quantity="-2147483648")), "land"),
    # wrong types and structure
    (
        text(webhook(22, line_items="none")),
        "wrong type in 'payload.line_items': expected a list, got a string",
    ),
    (text(webhook(23, id=True)), "wrong type in 'payload.id': expected bigint, got a boolean"),
    (text(webhook(24, rma=None)), "missing required field 'payload.rma'"),
    ('{"webhook_id": "w-25", "payload": ' + DEEP + "}", "bad JSON: maximum recursion depth ..."),
    (text(webhook(26, note=[[[[{"a": [1]}]]]] * 3)), "land"),  # nested unknown fields: kept
    (text(webhook(27, note="x" * 3_000_000)), "land"),  # a 3 MB value
    # bytes: not UTF-8, encoded surrogates, a BOM in the middle of the file
    (
        text(webhook(28, rma="LR-caf\u00e9")).encode("latin-1"),
        "invalid_encoding: byte 0xe9 at offset ... of the line is not valid UTF-8",
    ),
    (
        text(webhook(29, rma="LR-\ud800")).encode("utf-8", "surrogatepass"),
        "invalid_encoding: byte 0xed at offset ... of the line is not valid UTF-8",
    ),
    (
        raw_payload(30, "rma", '"\\ud800"'),
        "bad JSON: a string holds an unpaired UTF-16 surrogate (not storable)",
    ),
    ("\ufeff" + text(webhook(31)), "land"),
    (
        b"\xff\xfe" + text(webhook(32)).encode("utf-16-le"),
        "invalid_encoding: byte 0xff at offset 0 of the line is not valid UTF-8",
    ),
    ("", "blank"),
    (" \t\r", "blank"),
    (text(webhook(35)) + "\r", "land"),
]


def outcome_matches(expected: str, actual: str) -> bool:
    if expected.endswith("...") and "..." in expected[:-3]:  # "a ... b": both ends
        head, _, tail = expected.partition(" ... ")
        return actual.startswith(head) and actual.endswith(tail)
    if expected.endswith(" ..."):
        return actual.startswith(expected[:-4])
    if "at offset ... of" in expected:
        head, _, tail = expected.partition("...")
        return actual.startswith(head) and actual.endswith(tail) and actual[len(head)].isdigit()
    return actual == expected


def write_file(path: Path, lines: list[str | bytes], encoding: str = "utf-8") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(
        (line if isinstance(line, bytes) else line.encode(encoding, "surrogatepass")) + b"\n"
        for line in lines
    )
    path.write_bytes(data)
    return data


def land_drops(tmp_path: Path, landing: Path, fast: bool):
    con = connect(tmp_path / f"warehouse-{fast}.duckdb")
    try:
        summaries = land_files(con, landing, sources=["returns_saas", "shopify"], fast_path=fast)
        hooks = con.execute(
            "select _row_number, return_id, created_at, total_refund, line_items[1].quantity, "
            "length(payload) from raw.returns_saas_webhooks order by 1"
        ).fetchall()
        refunds = con.execute(
            "select _row_number, id, created_at from raw.shopify_refunds order by 1"
        ).fetchall()
        letters = con.execute(
            "select source, position, raw, error from meta.dead_letters order by all"
        ).fetchall()
    finally:
        con.close()
    return summaries, hooks, refunds, letters


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "reference"])
def test_webhook_corpus(tmp_path, fast):
    landing = tmp_path / "landing"
    data = write_file(landing / "returns_saas" / "hostile.ndjson", [c for c, _ in WEBHOOK_CASES])
    sha = hashlib.sha256(data).hexdigest()
    summaries, hooks, _, letters = land_drops(tmp_path, landing, fast)

    expected_rows = [n for n, (_, want) in enumerate(WEBHOOK_CASES, 1) if want == "land"]
    assert [row[0] for row in hooks] == expected_rows
    dead = {int(pos.rsplit(":", 1)[1]): (raw, error) for _, pos, raw, error in letters}
    expected_dead = {
        n: want for n, (_, want) in enumerate(WEBHOOK_CASES, 1) if want not in ("land", "blank")
    }
    assert sorted(dead) == sorted(expected_dead)
    for n, want in expected_dead.items():
        assert outcome_matches(want, dead[n][1]), (n, dead[n][1])
    assert {pos.rsplit(":", 1)[0] for _, pos, _, _ in letters} == {sha}
    # the values that land at the edges are stored exactly
    by_line = {row[0]: row[1:] for row in hooks}
    assert by_line[4][1] == datetime(1, 1, 1, tzinfo=UTC)
    assert by_line[5][1] == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert by_line[10][2] == Decimal("99999999999999.9999")
    assert by_line[15][2] == Decimal("0.0000")
    assert by_line[17][0] == -(2**63)
    assert by_line[21][3] == -(2**31)
    assert by_line[27][4] > 3_000_000  # the payload, whole
    assert by_line[31][0] == 1031  # BOM-prefixed line in the middle of the file
    # the raw text of a line that is not UTF-8 keeps its bytes as escapes
    assert "LR-caf\\xe9" in dead[28][0]
    # accounting: every line is blank, landed or a dead letter
    s = summaries["returns_saas_webhooks"]
    blank = sum(want == "blank" for _, want in WEBHOOK_CASES)
    assert (s.rows, s.dead_letters) == (len(expected_rows), len(expected_dead))
    assert (s.lines_read, s.lines_ignored) == (len(WEBHOOK_CASES), blank)
    assert s.lines_ignored + s.rows + s.dead_letters == s.lines_read


def test_a_redropped_ndjson_file_is_counted_as_duplicate_lines(tmp_path):
    landing = tmp_path / "landing"
    lines = [text(webhook(1)), "", text(webhook(2, created_at="0001-01-01T00:00:00+14:00"))]
    write_file(landing / "returns_saas" / "a.ndjson", lines)
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        first = land_files(con, landing, sources=["returns_saas"])["returns_saas_webhooks"]
        write_file(landing / "returns_saas" / "a-again.ndjson", lines)  # the same content
        second = land_files(con, landing, sources=["returns_saas"])["returns_saas_webhooks"]
    finally:
        con.close()
    assert (first.lines_read, first.lines_ignored, first.rows, first.dead_letters) == (3, 1, 1, 1)
    assert (second.files_skipped, second.duplicate_lines, second.rows) == (2, 6, 0)


def refund(n: int, **overrides) -> dict:
    record = {
        "id": 5000 + n, "order_id": 450789469, "created_at": "2024-05-02T10:00:00-04:00",
        "processed_at": "2024-05-02T10:00:01-04:00", "note": "refund",
        "refund_line_items": [{"id": 1, "line_item_id": 7, "quantity": 1,
                               "restock_type": "return", "subtotal": "19.90",
                               "total_tax": "1.59",
                               "line_item": {"id": 7, "sku": "S-1", "price": "19.90"}}],
        "transactions": [{"id": 9, "kind": "refund", "status": "success", "amount": "21.49",
                          "currency": "USD", "gateway": "bogus"}],
    }  # fmt: skip
    record.update(overrides)
    return record


REFUND_CASES: list[tuple[str | bytes, str]] = [
    (text(refund(1)), "land"),
    (text(refund(2, created_at="0001-01-01T00:00:00+00:01")),
     "time out of range in 'created_at': '0001-01-01T00:00:00+00:01'" + TIME_RANGE),
    (text(refund(3, order_id=2**63)), "integer out of range in 'order_id': 9223372036854775808"),
    (text(refund(4, transactions=[{"id": 9, "amount": "1" * 30}])),
     "number out of range in 'transactions[0].amount': '" + "1" * 30 + "'"),
    (text(refund(5, refund_line_items=[{"quantity": 2**40}])),
     "integer out of range in 'refund_line_items[0].quantity': 1099511627776"),
    (text(refund(6, processed_at="9999-12-31T23:59:59-00:01")),
     "time out of range in 'processed_at': '9999-12-31T23:59:59-00:01'" + TIME_RANGE),
    (text(refund(7)).replace('"19.90"', "NaN", 1), "bad JSON: NaN is not a JSON value"),
    (text(refund(8, note="na\u00efve")).encode("cp1252"),
     "invalid_encoding: byte 0xef at offset ... of the line is not valid UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_refund_corpus_in_every_encoding(tmp_path, encoding):
    """The same refunds, as UTF-8, UTF-8 with a BOM and UTF-16 (both byte orders, with a BOM),
    land the same: the same rows, the same dead letters (but the line not valid in the file's
    encoding)."""
    landing = tmp_path / "landing"
    path = landing / "shopify" / "refunds.ndjson"
    lines = [c for c, _ in REFUND_CASES]
    if encoding == "utf-8":
        write_file(path, lines)
    else:
        body = "".join(
            (c.decode("cp1252") if isinstance(c, bytes) else c) + "\n" for c in lines[:-1]
        )
        data = {
            "utf-8-sig": lambda: b"\xef\xbb\xbf" + body.encode(),
            "utf-16": lambda: body.encode("utf-16"),  # BOM in the machine's order
            "utf-16-be-bom": lambda: b"\xfe\xff" + body.encode("utf-16-be"),
        }[encoding]()
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    for fast in (True, False):
        summaries, _, refunds, letters = land_drops(tmp_path / f"{encoding}-{fast}", landing, fast)
        expected = REFUND_CASES if encoding == "utf-8" else REFUND_CASES[:-1]
        assert [(n, i) for n, i, _ in refunds] == [
            (n, 5000 + n) for n, (_, want) in enumerate(expected, 1) if want == "land"
        ]
        assert refunds[0][2] == datetime(2024, 5, 2, 14, 0, tzinfo=UTC)
        got = {int(pos.rsplit(":", 1)[1]): error for _, pos, _, error in letters}
        want = {n: w for n, (_, w) in enumerate(expected, 1) if w != "land"}
        assert sorted(got) == sorted(want)
        for n, reason in want.items():
            assert outcome_matches(reason, got[n]), (n, got[n])
        s = summaries["shopify_refunds"]
        assert s.rows + s.dead_letters == len(expected)


def test_utf16_file_with_an_undecodable_line(tmp_path):
    """A lone surrogate in a UTF-16 file: that line is `invalid_encoding`, the others land."""
    landing = tmp_path / "landing"
    good = [text(webhook(n)) for n in (1, 2, 3)]
    data = b"\xff\xfe" + "\n".join(good[:2]).encode("utf-16-le") + "\n".encode("utf-16-le")
    data += "x".encode("utf-16-le") + b"\x00\xd8" + "\n".encode("utf-16-le")  # lone high half
    data += (good[2] + "\n").encode("utf-16-le") + b"\x41"  # and an odd byte at the very end
    (landing / "returns_saas").mkdir(parents=True)
    (landing / "returns_saas" / "w.ndjson").write_bytes(data)
    _, hooks, _, letters = land_drops(tmp_path, landing, True)
    assert [(n, rid) for n, rid, *_ in hooks] == [(1, 1001), (2, 1002), (4, 1003)]
    reason = "invalid_encoding: the line is not valid UTF-16 (the file has a UTF-16 BOM)"
    assert [(pos.rsplit(":", 1)[1], error) for _, pos, _, error in letters] == [
        ("3", reason),
        ("5", reason),
    ]


# -- CDC files and the Debezium decoder -------------------------------------------------------

INVOICES = "erp.public.account_invoice"  # total_amount_cache decimal(16,2), create_date µs
SALES = "erp.public.sale_sale"  # sale_date date
LINES = "erp.public.sale_line"  # unit_price decimal(16,4), quantity double
RECEIPTS = "wms.public.receipts"  # quantity decimal(12,3) (string mode), received_at zoned
T0 = 1_700_000_000_000


def b64(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)).decode()


def kafka(topic: str, offset: int, key: dict | None, value) -> str:
    return json.dumps(
        {"topic": topic, "partition": 0, "offset": offset, "key": key, "value": value},
        ensure_ascii=False,
    )


def invoice(offset: int, **after) -> str:
    row = {"id": offset, "number": f"INV-{offset}", "total_amount_cache": b64(123456)}
    row.update(after)
    env = {"after": row, "source": {"ts_ms": T0, "lsn": offset}, "op": "c", "ts_ms": T0}
    return kafka(INVOICES, offset, {"id": offset}, env)


def sale(offset: int, **after) -> str:
    row = {"id": offset, "number": f"S-{offset}", "sale_date": 19_000, **after}
    return kafka(SALES, offset, {"id": offset}, {"after": row, "source": {"ts_ms": T0}, "op": "r"})


def sale_line(offset: int, **after) -> str:
    row = {"id": offset, "unit_price": b64(19900), "quantity": 1.0, **after}
    return kafka(LINES, offset, {"id": offset}, {"after": row, "source": {"ts_ms": T0}, "op": "u"})


def receipt(offset: int, **after) -> str:
    row = {"receipt_id": offset, "dc_code": "DC-EAST", "quantity": "1.500", **after}
    row.setdefault("received_at", "2024-05-03T08:00:00Z")
    env = {"after": row, "source": {"ts_ms": T0}, "op": "c"}
    return kafka(RECEIPTS, offset, {"receipt_id": offset}, env)


def wrapped_sale(offset: int, sale_date, create_date) -> str:
    """Schema-wrapped (JsonConverter `schemas.enable=true`): Date and Timestamp by the schema."""
    schema = {
        "type": "struct",
        "fields": [
            {
                "field": "after",
                "type": "struct",
                "fields": [
                    {"field": "id", "type": "int64"},
                    {"field": "sale_date", "type": "int32", "name": "io.debezium.time.Date"},
                    {"field": "create_date", "type": "int64", "name": "io.debezium.time.Timestamp"},
                ],
            }
        ],
    }
    row = {"id": offset, "sale_date": sale_date, "create_date": create_date}
    payload = {"after": row, "source": {"ts_ms": T0}, "op": "c"}
    return kafka(SALES, offset, {"id": offset}, {"schema": schema, "payload": payload})


def variable_scale(offset: int, scale, value: str) -> str:
    return sale_line(offset, unit_price={"scale": scale, "value": value})


OOR = "out of range for"
# (line, expected): ("land", raw table, offset) or the dead letter: (position kind, reason)
CDC_CASES: list[tuple[str | bytes, tuple]] = [
    (invoice(0), ("land", "erp_account_invoice")),
    # times at and beyond their limits
    (receipt(1, received_at="0001-01-01T00:00:00+14:00"),
     ("pos", "after.received_at: timestamp out of range '0001-01-01T00:00:00+14:00'"
      + TIME_RANGE)),
    (receipt(2, received_at="0001-01-01T00:00:00Z"), ("land", "wms_receipts")),
    (invoice(3, create_date=2**63 - 1),
     ("pos", "after.create_date: timestamp out of range: 9223372036854775807")),
    (invoice(4, create_date=-(2**63)),
     ("pos", "after.create_date: timestamp out of range: -9223372036854775808")),
    (invoice(5, create_date=253_402_300_799_999_999), ("land", "erp_account_invoice")),
    (sale(6, sale_date=2**31 - 1), ("pos", "after.sale_date: date out of range: 2147483647")),
    (sale(7, sale_date=-(2**31)), ("pos", "after.sale_date: date out of range: -2147483648")),
    (sale(8, sale_date=2_932_896), ("land", "erp_sale_sale")),  # 9999-12-31
    (wrapped_sale(9, 2**31 - 1, T0),
     ("pos", "after.sale_date: date out of range: 2147483647")),
    (wrapped_sale(10, 19_000, 2**63 - 1),
     ("pos", "after.create_date: timestamp out of range: 9223372036854775807")),
    (wrapped_sale(11, 19_000, T0), ("land", "erp_sale_sale")),
    # numbers too large for their DECIMAL, in every encoding
    (invoice(12, total_amount_cache=b64(10**39)),
     ("pos", f"after.total_amount_cache: {OOR} decimal(16,2): {10**39}e-2")),
    (invoice(13, total_amount_cache=b64(10**16 - 1)), ("land", "erp_account_invoice")),
    (invoice(14, total_amount_cache=base64.b64encode(b"\x01" * 81).decode()),
     ("pos", f"after.total_amount_cache: {OOR} decimal(16,2): a 641-bit number")),
    (variable_scale(15, 10**9, b64(5)),
     ("pos", "after.unit_price.value: number out of range: scale 1000000000")),
    (variable_scale(16, -(10**9), b64(5)),
     ("pos", "after.unit_price.value: number out of range: scale -1000000000")),
    (variable_scale(17, 2, b64(1999)), ("land", "erp_sale_line")),
    (variable_scale(18, 2**64, b64(5)),
     ("pos", "after.unit_price.scale: expected an integer, got float 1.8446744073709552e+19")),
    (receipt(19, quantity="NaN"), ("pos", "after.quantity: bad number 'NaN' (decimal(12,3))")),
    (receipt(20, quantity="1e999999999"),
     ("pos", f"after.quantity: {OOR} decimal(12,3): '1e999999999'")),
    (receipt(21, quantity="9" * 200),
     ("pos", f"after.quantity: {OOR} decimal(12,3): '" + "9" * 56 + "...")),
    (receipt(22, quantity="999999999.9995"),
     ("pos", f"after.quantity: {OOR} decimal(12,3): 1000000000.000")),
    (sale_line(23, unit_price=1e308), ("pos", f"after.unit_price: {OOR} decimal(16,4): 1e+308")),
    (sale_line(24, quantity=1e308), ("land", "erp_sale_line")),  # a double is a double
    # integers beyond BIGINT (orjson reads beyond 64 bits as a float)
    (sale_line(25, product=2**64 - 1),
     ("pos", f"after.product: {OOR} bigint: 18446744073709551615")),
    (sale_line(26, product=2**64), ("pos", "after.product: expected an integer, got float "
                                    "1.8446744073709552e+19")),
    # wrong types, unknown operations, tombstones, unknown extra fields
    (sale(27, number=5), ("pos", "after.number: expected a string, got int 5")),
    (kafka(SALES, 28, {"id": 28}, {"op": "x", "after": {"id": 28}}),
     ("pos", "op: unknown operation 'x'")),
    (kafka(SALES, 29, {"id": 29}, None), ("land", "erp_sale_sale")),  # tombstone
    (sale(30, vendor_field={"nested": [[[{"deep": 1}]]]}), ("land", "erp_sale_sale")),
    # deeper than orjson writes (255): landed with _extra written by the standard library
    (sale(31, vendor_field=json.loads("[" * 300 + "]" * 300)), ("land", "erp_sale_sale")),
    # and the raw text of a dead letter that deep, too
    (kafka(SALES, 38, {"id": 38}, {"op": "c", "after": json.loads("[" * 600 + "]" * 600)}),
     ("pos", "after: expected an object, got array " + "[" * 60 + "...")),
    (sale(32, number="x" * 3_000_000), ("land", "erp_sale_sale")),  # a 3 MB value
    # lines: not UTF-8, a BOM in the middle, NaN, not JSON, no position
    (sale(33, number="caf\u00e9").encode("latin-1"),
     ("line", "invalid_encoding: byte 0xe9 at offset ... of the line is not valid UTF-8")),
    ("\ufeff" + sale(34), ("land", "erp_sale_sale")),
    (sale(35).replace("19000", "NaN"),
     ("line", "line: bad JSON (unexpected character, expected a JSON value: line 1 column ...")),
    (json.dumps({"topic": SALES, "partition": 0, "offset": 2**63}),
     ("line", "offset: out of range: 9223372036854775808")),
    ("   ", ("blank",)),
    (invoice(0), ("duplicate",)),  # the same position again: the first one wins
]  # fmt: skip


@pytest.fixture
def cdc_landing(tmp_path) -> Path:
    landing = tmp_path / "landing"
    (landing / "cdc").mkdir(parents=True)
    (landing / "cdc" / "connectors.json").write_text(
        json.dumps(
            {
                "erp": {"decimal.handling.mode": "precise"},
                "wms": {"decimal.handling.mode": "string"},
            }
        )
    )
    return landing


def cdc_outcome(con):
    rows = {}
    for table in ("erp_account_invoice", "erp_sale_sale", "erp_sale_line", "wms_receipts"):
        for (offset,) in con.execute(f"select _offset from raw.{table}").fetchall():
            rows[offset] = table
    letters = dict(con.execute("select position, error from meta.dead_letters").fetchall())
    return rows, letters


def test_cdc_corpus(tmp_path, cdc_landing):
    data = write_file(cdc_landing / "cdc" / "hostile.ndjson", [c for c, _ in CDC_CASES])
    sha = hashlib.sha256(data).hexdigest()
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        summary = land_cdc_files(con, cdc_landing, progress=False)
        rows, letters = cdc_outcome(con)
        values = [
            con.execute(sql).fetchone()[0]
            for sql in (
                "select received_at from raw.wms_receipts where _offset = 2",
                "select create_date from raw.erp_account_invoice where _offset = 5",
            )
        ]
        dates = con.execute(
            "select _offset, sale_date, length(number), _is_tombstone, _extra is not null "
            "from raw.erp_sale_sale order by 1"
        ).fetchall()
        prices = con.execute(
            "select _offset, unit_price, quantity from raw.erp_sale_line order by 1"
        ).fetchall()
        total = con.execute(
            "select total_amount_cache from raw.erp_account_invoice where _offset = 13"
        ).fetchone()[0]
    finally:
        con.close()
    expected_rows, expected_letters = {}, {}
    for n, (line, want) in enumerate(CDC_CASES, 1):
        if want[0] == "land":
            expected_rows[json.loads(line.lstrip("\ufeff"))["offset"]] = want[1]
        elif want[0] in ("pos", "line"):
            rec = json.loads(line.decode("latin-1") if isinstance(line, bytes) else line)
            topic = rec.get("topic")
            key = f"{topic}:0:{rec['offset']}" if want[0] == "pos" else f"{sha}:{n}"
            expected_letters[key] = want[1]
    assert rows == expected_rows
    assert sorted(letters) == sorted(expected_letters)
    for position, reason in expected_letters.items():
        assert outcome_matches(reason, letters[position]), (position, letters[position])
    # the values at the edges land exactly
    assert values == [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999)]
    assert (8, date(9999, 12, 31)) in [d[:2] for d in dates]
    assert (29, None, None, True, False) in dates  # the tombstone
    assert (32, date(2022, 1, 8), 3_000_000, False, False) in dates
    assert (30, date(2022, 1, 8), 4, False, True) in dates  # the unknown field kept in _extra
    assert prices == [(17, Decimal("19.9900"), 1.0), (24, Decimal("1.9900"), 1e308)]
    assert total == Decimal("99999999999999.99")
    # accounting: every line is blank, landed, a dead letter or a duplicate
    assert summary.lines_read == len(CDC_CASES) and summary.blank_lines == 1
    assert summary.duplicates == 1 and summary.unaccounted == 0
    assert sum(summary.landed.values()) == len(expected_rows)
    assert summary.dead_letters == len(expected_letters)
    assert summary.bad_lines == sum(want[0] == "line" for _, want in CDC_CASES)


def test_cdc_folder_hygiene(tmp_path, cdc_landing):
    """Issue 19: a directory named x.ndjson in cdc/ failed every run. Now it, a FIFO, a socket
    and symbolic links (to a file in cdc/, to /etc/passwd, dangling) are not read and are
    reported; the regular files land."""
    import socket

    cdc = cdc_landing / "cdc"
    write_file(cdc / "a.ndjson", [sale(1)])
    (cdc / "x.ndjson").mkdir()
    (cdc / "x.ndjson" / "inner.ndjson").write_text(sale(2) + "\n")
    os.mkfifo(cdc / "fifo.ndjson")
    (cdc / "link.ndjson").symlink_to(cdc / "a.ndjson")
    (cdc / "passwd.ndjson").symlink_to("/etc/passwd")
    (cdc / "dangling.ndjson").symlink_to(cdc / "missing.ndjson")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(cdc / "s.ndjson"))
    except OSError:  # a path too long for a socket: the other cases still stand
        sock.close()
        sock = None
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        summary = land_cdc_files(con, cdc_landing, progress=False)
        again = land_cdc_files(con, cdc_landing, progress=False)
        assert con.execute("select count(*) from meta.dead_letters").fetchone()[0] == 0
        assert con.execute("select _offset from raw.erp_sale_sale").fetchall() == [(1,)]
    finally:
        con.close()
        if sock is not None:
            sock.close()
    expected = [
        IgnoredFile("cdc/dangling.ndjson", "not read: a symbolic link (not followed)"),
        IgnoredFile("cdc/fifo.ndjson", "not read: a FIFO"),
        IgnoredFile("cdc/link.ndjson", "not read: a symbolic link (not followed)"),
        IgnoredFile("cdc/passwd.ndjson", "not read: a symbolic link (not followed)"),
        *([IgnoredFile("cdc/s.ndjson", "not read: a socket")] if sock is not None else []),
        IgnoredFile("cdc/x.ndjson", "not read: a directory"),
    ]
    assert summary.files_landed == ["cdc/a.ndjson"] and summary.files_ignored == expected
    assert again.files_skipped == ["cdc/a.ndjson"] and again.files_ignored == expected


def test_cdc_folder_itself_a_symlink_or_a_file(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_file(elsewhere / "a.ndjson", [sale(1)])
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "cdc").symlink_to(elsewhere)
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        linked = land_cdc_files(con, landing, progress=False)
        (landing / "cdc").unlink()
        (landing / "cdc").write_text("not a folder")
        plain = land_cdc_files(con, landing, progress=False)
        assert con.execute("select count(*) from raw.erp_sale_sale").fetchone()[0] == 0
    finally:
        con.close()
    assert linked.files_ignored == [
        IgnoredFile("cdc", "not a directory: a symbolic link (not followed)")
    ]
    assert plain.files_ignored == [IgnoredFile("cdc", "not a directory: a regular file")]


def test_unreadable_cdc_file_is_reported_and_lands_later(tmp_path, cdc_landing, monkeypatch):
    """A file that cannot be read (permissions; the tests may run as root, so the read is made
    to fail) is reported and left for the next run; the other files land."""
    from pipelines.lib.cdc import files

    write_file(cdc_landing / "cdc" / "a.ndjson", [sale(1)])
    write_file(cdc_landing / "cdc" / "b.ndjson", [sale(2)])
    real = files.sha256_cached

    def refuse_a(con, path):
        if path.name == "a.ndjson":
            raise PermissionError(13, "Permission denied", str(path))
        return real(con, path)

    con = connect(tmp_path / "warehouse.duckdb")
    try:
        monkeypatch.setattr(files, "sha256_cached", refuse_a)
        first = land_cdc_files(con, cdc_landing, progress=False)
        monkeypatch.setattr(files, "sha256_cached", real)
        second = land_cdc_files(con, cdc_landing, progress=False)
        offsets = con.execute("select _offset from raw.erp_sale_sale order by 1").fetchall()
    finally:
        con.close()
    assert first.files_ignored == [IgnoredFile("cdc/a.ndjson", "unreadable: Permission denied")]
    assert first.files_landed == ["cdc/b.ndjson"]
    assert second.files_landed == ["cdc/a.ndjson"] and second.files_skipped == ["cdc/b.ndjson"]
    assert offsets == [(1,), (2,)]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-8-sig", "utf-32"])
def test_cdc_file_encodings_land_alike(tmp_path, cdc_landing, codec):
    """UTF-16 (either byte order) and UTF-32 with a BOM, and UTF-8 with a BOM, land exactly
    as UTF-8: the same rows at the same positions, the same dead letters' reasons."""
    lines = [sale(1, number="Caf\u00e9 \u2603"), receipt(2, quantity="x"), "{oops", invoice(3)]
    body = "\r\n".join(lines) + "\r\n"
    bom = {"utf-16-be": b"\xfe\xff"}.get(codec, b"")
    results = []
    for name, data in (("plain", body.encode()), (codec, bom + body.encode(codec))):
        landing = tmp_path / name
        (landing / "cdc").mkdir(parents=True)
        (landing / "cdc" / "a.ndjson").write_bytes(data)
        con = connect(tmp_path / f"{name}.duckdb")
        try:
            summary = land_cdc_files(con, landing, progress=False)
            rows = con.execute(
                "select _topic, _offset, number from raw.erp_sale_sale union all "
                "select _topic, _offset, number from raw.erp_account_invoice order by all"
            ).fetchall()
            errors = sorted(
                e for (e,) in con.execute("select error from meta.dead_letters").fetchall()
            )
        finally:
            con.close()
        results.append((rows, errors, summary.lines_read, summary.unaccounted))
    assert results[0] == results[1]
    assert results[0][0] == [(INVOICES, 3, "INV-3"), (SALES, 1, "Caf\u00e9 \u2603")]
