"""The column-wise CDC file decoder against the reference, differentially (issue 23).

Every landing here is landed twice into fresh warehouses, once with the reference decoder
(orjson + `decode.TableDecoder` per record) and once column-wise (`cdc/columnar.py`, with small
chunks so that files span several), and the two must hold identical raw CDC tables (every column
but `_ingested_at`), stream ledgers, file ledgers and dead letters (position, raw text, error),
with the same `reason_code`s. The landings: the shared Debezium samples, the hostile CDC corpus
(tests/hostile/test_ndjson_cdc.py), hand-made encodings of every conversion, and simulated
landscapes at several seeds with faults and delivery noise. A test also checks that the
column-wise path decoded the bulk itself (it would pass trivially if it handed every line on).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.cdc.reasons import REASON_CODES, reason_code
from pipelines.lib.contracts import CDC_TABLES
from pipelines.lib.warehouse import connect
from tests.hostile.test_ndjson_cdc import CDC_CASES

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "debezium"
CONNECTORS = {
    "erp": {"decimal.handling.mode": "precise"},
    "wms": {"decimal.handling.mode": "string"},
}
SMALL_CHUNK = 4096  # bytes: several chunks per file, lines longer than a chunk too
SIM_CHUNK = 256 << 10  # simulated landscapes: a few chunks in the larger files


def _state(con) -> dict:
    out = {}
    for t in CDC_TABLES:
        cols = [
            c
            for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = 'raw' "
                "and table_name = ? and column_name <> '_ingested_at' order by ordinal_position",
                [t.raw_table],
            ).fetchall()
        ]
        select = ", ".join(f'"{c}"' for c in cols)
        out[t.raw_table] = con.execute(
            f"select {select} from raw.{t.raw_table} order by all"
        ).fetchall()
    out["stream_offsets"] = con.execute(
        'select source, topic, "partition", next_offset from meta.stream_offsets order by all'
    ).fetchall()
    out["files_landed"] = con.execute(
        "select sha256, source, path, rows_landed, dead_letters from meta.files_landed order by all"
    ).fetchall()
    out["dead_letters"] = con.execute(
        "select source, position, raw, error from meta.dead_letters order by all"
    ).fetchall()
    return out


def land_both(
    tmp_path: Path, landing: Path, chunk_bytes: int = SMALL_CHUNK, other: str = "columnar"
):
    """Land `landing` with the reference decoder and with `other`; returns (reference state,
    other state, other's summary)."""
    states, summaries = [], []
    for decoder in ("reference", other):
        con = connect(tmp_path / f"{decoder}.duckdb")
        try:
            summary = land_cdc_files(
                con, landing, progress=False, decoder=decoder, chunk_bytes=chunk_bytes
            )
            # landing again changes nothing (ledger semantics), either way
            again = land_cdc_files(con, landing, progress=False, decoder=decoder)
            assert sum(again.landed.values()) == 0 and again.dead_letters == 0
            states.append(_state(con))
            summaries.append(summary)
        finally:
            con.close()
    ref, col = states
    for name in ref:
        assert col[name] == ref[name], f"{name} differs"
    assert summaries[1].lines_read == summaries[0].lines_read
    assert summaries[1].blank_lines == summaries[0].blank_lines
    assert summaries[1].unaccounted == 0
    return ref, col, summaries[1]


def write_landing(root: Path, lines: list[str | bytes], name: str = "a.ndjson") -> Path:
    (root / "cdc").mkdir(parents=True, exist_ok=True)
    (root / "cdc" / "connectors.json").write_text(json.dumps(CONNECTORS))
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    (root / "cdc" / name).write_bytes(data)
    return root


def test_hostile_cdc_corpus_lands_alike(tmp_path):
    lines = [line for line, _ in CDC_CASES]
    ref, _, _ = land_both(tmp_path, write_landing(tmp_path / "landing", lines), 1 << 20)
    assert len(ref["dead_letters"]) > 20  # the corpus is mostly dead letters
    for _, _, _, error in ref["dead_letters"]:
        assert reason_code(error) in REASON_CODES and reason_code(error) != "other", error


def test_shared_debezium_samples_land_alike(tmp_path):
    """The real samples (bare, schema-wrapped, update, delete, truncate) as records of a
    contract topic: their extra columns land in `_extra`, exactly as the reference writes it."""
    lines = []
    for offset, path in enumerate(sorted(FIXTURES.glob("*.json"))):
        value = json.loads(path.read_text())
        payload = value.get("payload", value) if isinstance(value, dict) else value
        image = (payload.get("after") or payload.get("before") or {}) if payload else {}
        key = {"id": image["id"]} if "id" in image else None
        record = {"topic": "erp.public.party_party", "partition": 0, "offset": offset,
                  "key": key, "value": value}  # fmt: skip
        lines.append(json.dumps(record, separators=(",", ":")))
    ref, _, _ = land_both(tmp_path, write_landing(tmp_path / "landing", lines), 1 << 20)
    assert len(ref["erp_party_party"]) >= 6


def b64(n: int, size: int = 8) -> str:
    return base64.b64encode(n.to_bytes(size, "big", signed=True)).decode()


T0 = int(datetime(2026, 11, 3, 10, 0, tzinfo=UTC).timestamp() * 1_000_000)


def _rec(topic: str, offset: int, key, value) -> str:
    return json.dumps(
        {"topic": topic, "partition": offset % 3, "offset": offset, "key": key, "value": value},
        separators=(",", ":"),
    )


def _env(op: str, after: dict | None, ts: int | None = 1_794_883_548_000, **extra) -> dict:
    return {"before": None, "after": after, "source": {"ts_ms": ts, "lsn": 99, "txId": 7},
            "op": op, "ts_ms": 1_794_883_548_500, **extra}  # fmt: skip


def encoding_cases() -> list[str]:
    """Every conversion the column-wise path does, with values at and beyond the edges."""
    inv, line, sale, rec = (
        "erp.public.account_invoice", "erp.public.sale_line", "erp.public.sale_sale",
        "wms.public.receipts",
    )  # fmt: skip
    out = []
    n = 0

    def add(topic, key, value):
        nonlocal n
        out.append(_rec(topic, n, key, value))
        n += 1

    prices = [b64(1234500), b64(-1), b64(0, 1), "AAA=", "AR==", "12.50", "1234", "-0.0001",
              "0.00001", 12.5, 3, -7, 1e16, 0.1, "", " 1", "1e3",
              {"scale": 2, "value": b64(199)}, {"scale": 5, "value": b64(1)}, None, True,
              b64(10**16), b64(10**15), "1_0"]  # fmt: skip
    for p in prices:
        add(line, {"id": n}, _env("c", {"id": n, "sale": 1, "product": 2, "quantity": 1.5,
                                        "unit_price": p, "description": "x"}))  # fmt: skip
    for q in ["2.000", "2.5", "2.0005", "-1", 4, 4.25, "abc", "999999999.999", "1000000000"]:
        add(rec, {"receipt_id": n}, _env("c", {"receipt_id": n, "dc_code": "DC-EAST",
             "quantity": q, "received_at": "2026-11-20T13:59:06Z", "sku": "S"}))  # fmt: skip
    for at in ["2026-11-20T13:59:06.5+02:00", "2026-11-20 13:59:06", "2026-02-30T00:00:00Z",
               "2026-11-20T13:59:06.1234567Z", "2026-11-20T24:00:00Z", "0001-01-01T00:00:00Z",
               "9999-12-31T23:59:59.999999-01:00", "2026-11-20T13:59:06+0000", 1_700_000_000,
               "2026-11-20", "2026-11-20T13:59:60Z", "2026-11-20T13:59:06-00:30",
               # the UTC form read by strptime: calendar edges, bounds, near misses
               "2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T23:59:59Z",
               "2026-00-10T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-00T00:00:00Z",
               "0000-01-01T00:00:00Z", "1000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
               "1969-12-31T23:59:59Z", "2026-11-20t13:59:06Z", "2026-11-20T13:59:06z",
               "2026-11-20T13:59:06Z ", "+2026-11-20T13:59:06Z",
               "2026-11-20T1:59:06Z"]:  # fmt: skip
        after = {"receipt_id": n, "dc_code": "DC-EAST", "quantity": "1.000", "received_at": at}
        add(rec, {"receipt_id": n}, _env("c", after))
    for created in [T0, -62_135_596_800_000_000, 253_402_300_799_999_999, 2**63,
                    "2026-01-01T00:00:00Z", 1.5, None]:  # fmt: skip
        after = {"id": n, "number": "INV", "total_amount_cache": b64(-500),
                 "create_date": created, "invoice_date": 20_000}  # fmt: skip
        add(inv, {"id": n}, _env("u", after))
    for d in [0, -719_162, 2_932_896, 2_932_897, "2026-01-01", 1.0]:
        add(sale, {"id": n}, _env("r", {"id": n, "sale_date": d, "state": "done"}))
    # ops, keys, tombstones, sources, extras
    add(sale, {"id": n}, None)
    add(sale, {"id": n}, {"schema": None, "payload": None})
    add(sale, None, None)
    add(sale, {"id": n}, _env("d", None))
    add(sale, {"id": n}, _env("t", None))
    add(sale, None, _env("t", None))
    add(sale, {"id": "7"}, _env("c", {"id": 1}))
    add(sale, {"id": n, "x": 1}, _env("c", {"id": n}))
    add(sale, {"id": n}, _env("c", {"number": "no id"}))
    add(sale, {"id": n}, _env("c", {"id": n}, ts=0))
    add(sale, {"id": n}, _env("c", {"id": n}, ts=None))
    add(sale, {"id": n}, _env("c", {"id": n}, ts=2**62))
    add(sale, {"id": n}, {**_env("c", {"id": n}), "source": "nope"})
    add(sale, {"id": n}, {**_env("c", {"id": n}), "op": "m"})
    add(sale, {"id": n}, {**_env("c", {"id": n}), "op": 1})
    add(
        sale,
        {"id": n},
        _env("c", {"id": n, "extra_int": 5, "extra_str": "a/é", "extra_null": None}),
    )
    add(sale, {"id": n}, _env("c", {"id": n, "extra_float": 1.5, "extra_obj": {"a": 1}}))
    add(sale, {"id": n}, _env("c", {"id": n, "number": 'tab\tand "quote"'}))
    add(sale, {"id": n}, _env("c", {"id": n, "number": "\u2028 sep"}))
    add(sale, {"id": n}, "not json {")
    add(sale, {"id": n}, [1, 2])
    add("erp.public.unknown", {"id": n}, _env("c", {"id": n}))
    add(sale, {"id": n}, _env("c", {"id": n}) | {"schema": 1})
    # raw lines the JSON readers disagree on
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":900,"key":{"id":1},'
               '"value":{"op":"c","after":{"id":1,"number":"a"},"op":"d"}}')  # fmt: skip
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":901,"key":{"id":1},'
               '"value":{"op":"c","after":{"id":1,},"source":null}}')  # fmt: skip
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":902,"key":{"id":1},'
               '"value":{"op":"c","after":{"id":1,"party":1e400}}}')  # fmt: skip
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":903,"key":{"id":1},'
               '"value":{"op":"c","after":{"id":1,"party":Infinity}}}')  # fmt: skip
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":904,"key":{"id":1},'
               '"value":{"op":"c","after":{"id":1,"number":"\\ud800"}}}')  # fmt: skip
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":905,"key":{"id":1},'
               '"value":{"op":"c","after":{"id":1,"id":2}}}')  # fmt: skip
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":906,"key":{"id":1},'
               '"value":{"op" : "c", "after" : {"id" : 1 , '
               '"party" : 123456789012345678901234}}}')  # fmt: skip
    out.append('{"topic":"erp.public.sale_sale","partition":0,"offset":907,"key":{"id":1},'
               '"value":{"op":"c","after":{"id":1}},"offset":908}')  # fmt: skip
    out.append(
        '{"topic":"erp.public.sale_sale","partition":-1,"offset":909,"key":{"id":1},"value":null}'
    )
    out.append(
        '{"topic":"erp.public.sale_sale","partition":0,"offset":1,"key":{"id":1},"value":null}'
    )
    out.append("")
    out.append("  \r")
    out.append(b"\xef\xbb\xbf" + out[0].encode())
    out.append(out[1].encode().replace(b'"x"', b'"\xff"'))
    return out


@pytest.mark.parametrize("chunk_bytes", [SMALL_CHUNK * 4, 1 << 20])
def test_every_encoding_lands_alike(tmp_path, chunk_bytes):
    ref, _, _ = land_both(
        tmp_path, write_landing(tmp_path / "landing", encoding_cases()), chunk_bytes
    )
    assert ref["dead_letters"] and ref["erp_sale_line"] and ref["wms_receipts"]


def test_wrapped_envelopes_of_every_encoding_land_alike(tmp_path):
    """Schema-wrapped envelopes (JsonConverter) in every decimal and time mode the simulator
    writes, from the simulator's own schema builder."""
    from returnsync_sim.cdc import Encoding, envelope_schema

    table = next(t for t in CDC_TABLES if t.table == "sale_line")
    sale = next(t for t in CDC_TABLES if t.table == "sale_sale")
    lines, n = [], 0
    for mode, value in (("precise", b64(123456)), ("string", "12.3456"), ("double", 12.5),
                        ("variable", {"scale": 3, "value": b64(12345)}),
                        ("precise", "not b64!"), ("variable", b64(1))):  # fmt: skip
        schema = envelope_schema(table, Encoding(True, mode, "micro"))
        after = {"id": n, "sale": 1, "product": 1, "quantity": 2.0, "unit_price": value}
        lines.append(
            _rec(table.topic, n, {"id": n}, {"schema": schema, "payload": _env("c", after)})
        )
        n += 1
    for time_mode, created in (("micro", T0), ("milli", T0 // 1000), ("milli", 2**62)):
        schema = envelope_schema(sale, Encoding(True, "precise", time_mode))
        after = {"id": n, "sale_date": 20_000, "create_date": created}
        lines.append(
            _rec(sale.topic, n, {"id": n}, {"schema": schema, "payload": _env("u", after)})
        )
        n += 1
    lines.append(_rec(sale.topic, n, {"id": n}, {"schema": schema, "payload": None}))
    ref, _, _ = land_both(tmp_path, write_landing(tmp_path / "landing", lines), 1 << 20)
    assert len(ref["erp_sale_line"]) == 4


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_simulated_landscapes_land_alike(tmp_path, seed):
    from dataclasses import replace

    from returnsync_sim import SimOptions
    from returnsync_sim import simulate as run_simulation

    landing = tmp_path / "landing"
    options = replace(SimOptions(), fault_rate=0.3, noise=True)
    run_simulation(60, seed, landing, datetime(2026, 12, 1, tzinfo=UTC), options, progress=False)
    ref, _, summary = land_both(tmp_path, landing, SIM_CHUNK)
    rows = sum(len(ref[t.raw_table]) for t in CDC_TABLES)
    # the column-wise path decoded the bulk itself
    assert summary.columnar_rows >= 0.95 * rows, (summary.columnar_rows, rows)
