"""The NDJSON fast path (orjson + generated row builder, `files/fastrow.py`) against the reference
converter (`RowConverter`): the same rows, `_extra`, payloads and dead letters, line for line."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.lib.contracts import FILE_SOURCES
from pipelines.lib.files import land_files
from pipelines.lib.files.fastrow import Slow, compile_builder
from pipelines.lib.warehouse import connect

SOURCES = {fs.raw_table: fs for fs in FILE_SOURCES}
SHOPIFY_FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "shopify"
FILE_SOURCE_NAMES = ("returns_saas", "shopify", "amazon", "b2b", "reference")

WEBHOOK = (
    '{"webhook_id":"w-%d","topic":"return.updated","delivered_at":"2024-05-01T10:00:00Z",'
    '"payload":{"id":%s,"rma":"LR-1","state":"open","created_at":"2024-05-01T09:00:00Z",'
    '"updated_at":%s,"order_id":450789469,"order_name":"#1001","currency":"USD",'
    '"outcome":"refund","total_refund":%s,"tracking_number":"1Z9","customer":%s,'
    '"line_items":[{"line_item_id":1,"provider_line_item_id":703073504,"sku":"S-1",'
    '"title":"Caf\\u00e9 mug","quantity":%s,"price":%s,"refund":"199.00",'
    '"return_reason":"damaged","parent_return_reason":"quality"}]}%s}'
)


def webhook(n, rid="104233", updated='"2024-05-01T11:30:00+02:00"', total='"199.00"',
            customer='{"email":"j@example.com"}', qty="1", price='"199.00"', tail=""):  # fmt: skip
    return WEBHOOK % (n, rid, updated, total, customer, qty, price, tail)


# Lines the fast builder accepts, lines it must decline, and lines the reference dead-letters.
WEBHOOK_LINES = [
    webhook(1),
    webhook(2, customer='{"email":"j@example.com","score":1.50}'),  # float kept exactly
    webhook(3, total="199.5"),  # JSON number for money
    webhook(4, total="199", price="12"),  # integers for money
    webhook(5, rid='"104233"', qty='"2"'),  # integers as strings
    webhook(6, customer='{"big":123456789012345678901234567890}'),  # beyond 64 bits
    webhook(7, customer='{"u64":18446744073709551615,"neg":-9223372036854775809}'),
    webhook(8, rid="9223372036854775808"),  # out of bigint range
    webhook(9, updated='"2024-05-01T11:30:00.123456+02:00"'),
    webhook(10, updated='"2024-05-01T11:30:00"'),  # naive: UTC
    webhook(11, updated='"2024-05-01"'),
    webhook(12, updated='"yesterday"'),
    webhook(13, updated="null"),
    webhook(14, total='"9999999999999999999999999.9"'),
    webhook(15, total='"99999999999999.99995"'),
    webhook(16, total='" 12.345678 "'),
    webhook(17, total='"1e5"'),
    webhook(18, price="1E2"),
    webhook(19, qty="true"),
    webhook(20, customer="NaN"),  # not JSON: a dead letter (orjson, for CDC, refuses it too)
    webhook(21, customer='"\\ud800"'),
    webhook(22, tail=',"signature":"abc","retries":[1,2.0]'),
    webhook(23, tail=',"signature":"abc","webhook_id":"w-dup"'),  # duplicate key: last wins
    webhook(24, total="-0"),
    webhook(25, customer='{"name":"Zo\\u00eb \\"Z\\" \\u2603","note":"tab\\tnew\\nline"}'),
    webhook(26, price='"12:30.5"'),
    '{"webhook_id":"w-27","topic":"return.created","delivered_at":"2024-05-01T10:00:00Z",'
    '"payload":null}',
    '{"webhook_id":"w-28","topic":"return.created","delivered_at":"2024-05-01T10:00:00Z",'
    '"payload":[1,2]}',
    '{"webhook_id":"w-29","topic":"return.created","delivered_at":"2024-05-01T10:00:00Z"}',
    '{"webhook_id":"w-30","payload":{"id":1,"line_items":{"not":"a list"}}}',
    '[{"webhook_id":"w-31"}]',
    '"just a string"',
    "{not json",
    "\ufeff" + webhook(34),  # a BOM in the middle of a file
    "",
    "   ",
    webhook(37) + "\r",
    webhook(38, customer="[" * 50 + "]" * 50),
]


def refund_line(n: int, **overrides) -> str:
    record = json.loads((SHOPIFY_FIXTURE / "refund.json").read_text())["refund"]
    record["id"] = n
    record.update(overrides)
    return json.dumps(record)


SHOPIFY_LINES = [
    refund_line(1),
    refund_line(2, note=5),  # a number for text
    refund_line(3, note=True),
    refund_line(4, id="4"),
    refund_line(5, created_at=None),
    refund_line(6, processed_at="soon"),
    refund_line(7, user_id=799407056, order_adjustments=[]),
    refund_line(8, transactions=[{"id": 9, "amount": 10, "kind": "refund"}]),
    refund_line(9, transactions=[{"id": 9, "amount": "x", "kind": "refund"}]),
    refund_line(10, transactions={"id": 9}),
    refund_line(11, refund_line_items=[None, {"id": 1, "line_item": {"id": 2, "extra": [1]}}]),
    refund_line(12, refund_line_items=["a"]),
    refund_line(13).replace('"note"', '"score": 0.25, "note"'),
    refund_line(14).replace('"note"', '"nested": {"deep": [{"x": 1e-3}]}, "note"'),
    refund_line(15, order_id=2**64),
    refund_line(16, note="ok").replace('"ok"', '"\\u00e9t\\u00e9"'),
]


# Values at and beyond their types' limits, bytes that are not UTF-8, NaN: DESIGN §12. Each is
# landed or dead-lettered alike by both converters, and none stops the run.
LIMIT_LINES = [
    webhook(40, updated='"0001-01-01T00:00:00+14:00"'),  # year 0 in UTC (issue 19)
    webhook(41, updated='"9999-12-31T23:59:59-14:00"'),  # year 10000 in UTC
    webhook(42, updated='"0001-01-01T00:00:00Z"'),  # the first representable time
    webhook(43, total="1e999999999"),
    webhook(44, total="1e-999999999"),
    webhook(45, total='"' + "9" * 40 + '"'),
    webhook(46, rid="1e999999"),
    webhook(47, rid="-9223372036854775808"),
    webhook(48, qty="2147483648"),
    webhook(49, qty='"-2147483648"'),
    webhook(50, customer="-Infinity"),
    webhook(51, customer='{"deep":' + "[" * 300 + "]" * 300 + "}"),
    webhook(52, customer='{"deep":' + "[" * 300 + "1.5" + "]" * 300 + "}"),
]
LIMIT_BYTES = [
    webhook(53, customer='"caf\u00e9"').replace("\\u00e9", "\u00e9").encode("latin-1"),
    webhook(54).encode() + b"\xed\xa0\x80",  # an encoded surrogate
]


def land_both(tmp_path: Path, landing: Path, variants=None) -> tuple[dict, dict]:
    """Land copies of `landing` with the fast path and without (or with each of `variants`,
    keyword arguments of land_files); returns what each stored."""
    out = []
    for i, kwargs in enumerate(variants or ({"fast_path": True}, {"fast_path": False})):
        copy = tmp_path / f"landing-{i}"
        shutil.copytree(landing, copy)
        con = connect(tmp_path / f"warehouse-{i}.duckdb")
        try:
            summaries = land_files(con, copy, **{"batch_rows": 7, **kwargs})
            stored = {
                fs.raw_table: con.execute(
                    f"select * exclude (_ingested_at) from raw.{fs.raw_table} "
                    "order by _file_sha256, _row_number"
                ).fetchall()
                for fs in FILE_SOURCES
            }
            stored["dead_letters"] = con.execute(
                "select source, position, raw, error from meta.dead_letters order by all"
            ).fetchall()
            stored["files_landed"] = con.execute(
                "select sha256, source, path, rows_landed, dead_letters from meta.files_landed "
                "order by all"
            ).fetchall()
            stored["summaries"] = {
                t: (s.files_landed, s.rows, s.dead_letters) for t, s in summaries.items()
            }
        finally:
            con.close()
        out.append(stored)
    return out[0], out[1]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass"))


def test_tricky_lines_give_identical_rows_and_dead_letters(tmp_path):
    landing = tmp_path / "landing"
    write_lines(landing / "returns_saas" / "webhooks.ndjson", WEBHOOK_LINES)
    write_lines(landing / "shopify" / "refunds.ndjson", SHOPIFY_LINES)
    fast, slow = land_both(tmp_path, landing)
    assert fast == slow
    assert (len(fast["returns_saas_webhooks"]), len(fast["shopify_refunds"])) == (19, 9)
    assert len(fast["dead_letters"]) == 24
    extras = [row[3] for row in fast["returns_saas_webhooks"]]  # _extra: exact JSON numbers
    assert '{"signature":"abc","retries":[1,2.0]}' in extras


def test_values_at_their_limits_give_identical_rows_and_dead_letters(tmp_path):
    landing = tmp_path / "landing"
    path = landing / "returns_saas" / "limits.ndjson"
    path.parent.mkdir(parents=True)
    path.write_bytes(
        b"".join(line.encode() + b"\n" for line in LIMIT_LINES) + b"\n".join(LIMIT_BYTES)
    )
    utf16 = landing / "returns_saas" / "limits-utf16.ndjson"
    utf16.write_bytes(("\n".join([*LIMIT_LINES[:3], webhook(55)]) + "\n").encode("utf-16"))
    fast, slow = land_both(tmp_path, landing)
    assert fast == slow
    landed = sorted(row[2] for row in fast["returns_saas_webhooks"])  # _row_number
    errors = sorted(error for _, _, _, error in fast["dead_letters"])
    # limits.ndjson: 42, 44, 47, 49, 51, 52 land; limits-utf16.ndjson: 42 and 55
    assert landed == [3, 3, 4, 5, 8, 10, 12, 13]
    assert len(errors) == 11 and sum(e.startswith("time out of range") for e in errors) == 4
    assert sum(e.startswith("invalid_encoding: ") for e in errors) == 2


def test_simulated_landscape_gives_identical_rows_and_dead_letters(tmp_path):
    from returnsync_sim import SimOptions, simulate

    sim = tmp_path / "sim"
    simulate(200, 5, sim, datetime(2024, 6, 30, tzinfo=UTC), SimOptions(), progress=False)
    landing = tmp_path / "landing"
    for name in FILE_SOURCE_NAMES:
        shutil.copytree(sim / name, landing / name)
    fast, slow = land_both(tmp_path, landing)
    assert fast == slow
    assert any(source in ("returns_saas", "shopify") for source, *_ in fast["dead_letters"])
    # and the builder, not the reference, converted nearly every line
    for table in ("returns_saas_webhooks", "shopify_refunds"):
        fs = SOURCES[table]
        built = declined = 0
        for path in sorted(landing.glob(fs.pattern)):
            for line in path.read_bytes().splitlines():
                try:
                    compile_builder(fs)(parse(line))
                    built += 1
                except Exception:
                    declined += 1
        assert built > 20 * declined


def test_batches_by_bytes_land_the_same(tmp_path):
    landing = tmp_path / "landing"
    write_lines(landing / "returns_saas" / "webhooks.ndjson", WEBHOOK_LINES)
    write_lines(landing / "shopify" / "refunds.ndjson", SHOPIFY_LINES)
    b2b = "request_id,sku,quantity,status\n" + "".join(f"B-{i},S,{i},ok\n" for i in range(9))
    write_lines(landing / "b2b" / "requests.csv", [b2b + "B-x,S,lots,ok"])
    one_batch, tiny = land_both(
        tmp_path, landing, [{"batch_rows": 10**6}, {"batch_rows": 10**6, "batch_bytes": 1}]
    )
    assert one_batch == tiny
    assert len(one_batch["b2b_credit_requests"]) == 9


def parse(line: str) -> dict:
    return json.loads(line, parse_float=Decimal)


@pytest.mark.parametrize("table", ["returns_saas_webhooks", "shopify_refunds"])
def test_builder_takes_clean_lines_and_declines_the_rest(table):
    build = compile_builder(SOURCES[table])
    clean, odd = (
        (webhook(1), webhook(2, total="199.5"))
        if table == "returns_saas_webhooks"
        else (refund_line(1), refund_line(2, id="2"))
    )
    _extra, *values = build(parse(clean))
    assert len(values) == len(SOURCES[table].columns)
    with pytest.raises(Slow):
        build(parse(odd))


def test_exact_builder_keeps_json_floats_as_written():
    # Shopify's own refund has `"rate":0.06` in its line items' tax lines
    line = (SHOPIFY_FIXTURE / "refund.json").read_text().replace('"rate": 0.06', '"rate": 0.060')
    extra, *_ = compile_builder(SOURCES["shopify_refunds"], exact_numbers=True)(
        parse(line)["refund"]
    )
    assert '"rate":0.060' in extra


def test_cyclic_gc_is_restored_after_landing(tmp_path):
    import gc

    landing = tmp_path / "landing"
    write_lines(landing / "shopify" / "refunds.ndjson", SHOPIFY_LINES[:2])
    con = connect(tmp_path / "w.duckdb")
    try:
        assert gc.isenabled()
        land_files(con, landing)
        assert gc.isenabled()
    finally:
        con.close()
