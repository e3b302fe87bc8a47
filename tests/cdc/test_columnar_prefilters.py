"""The column-wise decoder's cheap certainty prefilters (issue 23), differentially.

The checks that send a line to the reference decoder run first on bytes: NaN/Infinity only on
lines where an ASCII-lower-cased copy of the chunk has "nan" or "inf", a 3-digit exponent only
where it follows a number's start (a string such as a tracking number "1Z8E654E..." is no
number), runs of 25 digits. Each line here lands both ways (`land_both`: identical raw tables,
ledgers and dead letters, with their reason codes), and the lines the SQL path can be sure of
are decoded there, not handed on.
"""

from __future__ import annotations

import json

from tests.cdc.test_columnar_diff import _env, _rec, land_both, write_landing

TOPIC = "wms.public.receipts"


def _receipt(offset: int, **after) -> dict:
    row = {"receipt_id": offset + 1, "dc_code": "DC-WEST", "rma_number": None,
           "tracking_number": "1Z8E654E0000000002", "sku": "P10057", "lot": None,
           "serial": None, "quantity": "1.000", "received_at": "2026-02-15T22:05:23Z",
           "license_plate": "LP1", "dock": "D2", **after}  # fmt: skip
    return row


def _line(offset: int, **after) -> str:
    return _rec(TOPIC, offset, {"receipt_id": offset + 1}, _env("c", _receipt(offset, **after)))


def test_exponent_like_strings_decode_in_sql_and_real_exponents_go_to_the_reference(tmp_path):
    plain = [_line(i, tracking_number=t) for i, t in enumerate(
        ["1Z8E654E0000000002", "X1E999", "e+123", "12E-345 box", "1ze0400"]
    )]  # fmt: skip
    # numbers with 3-digit exponents: beyond a double (orjson refuses: a dead letter) or not
    risky = [
        _line(10).replace('"ts_ms":1794883548500', '"ts_ms":1e400'),
        _line(11).replace('"lsn":99', '"lsn": 1.5E+400'),
        _line(12).replace('"lsn":99', '"lsn":[-2e0400]'),
        _line(13).replace('"lsn":99', '"lsn":1e-300'),
        _line(14, dock=None).replace('"dock":null', '"dock":\t7E308'),
    ]
    ref, _, summary = land_both(tmp_path, write_landing(tmp_path / "landing", plain + risky))
    assert len(ref["wms_receipts"]) + len(ref["dead_letters"]) == len(plain + risky)
    assert len(ref["dead_letters"]) >= 3, ref["dead_letters"]
    assert summary.columnar_rows == len(plain), summary.columnar_rows


def test_nan_and_infinity_in_any_case_land_as_the_reference_does(tmp_path):
    plain = [_line(i, sku=s) for i, s in enumerate(["NaN-box", "INFO", "Nancy", "inf", "nAn"])]
    risky = [
        _line(10).replace('"lsn":99', '"lsn":NaN'),
        _line(11).replace('"lsn":99', '"lsn": -Infinity'),
        _line(12).replace('"lsn":99', '"lsn":[iNf]'),
        _line(13, dock=None).replace('"dock":null', '"dock":nAN'),
        _line(14).replace('"quantity":"1.000"', '"quantity":INFINITY'),
    ]
    ref, _, summary = land_both(tmp_path, write_landing(tmp_path / "landing", plain + risky))
    assert len(ref["wms_receipts"]) + len(ref["dead_letters"]) == len(plain + risky)
    assert len(ref["dead_letters"]) >= 1, ref["dead_letters"]
    assert summary.columnar_rows == len(plain), summary.columnar_rows


def test_long_digit_runs_in_any_chunk_position_land_as_the_reference_does(tmp_path):
    """A run of 25 digits (a number that may be beyond a double) sends its line on; the lines
    around it, in the same chunk, stay in SQL. Small chunks put runs at chunk edges."""
    lines = []
    for i in range(30):
        if i % 7 == 3:
            lines.append(_line(i).replace('"lsn":99', '"lsn":' + "9" * (25 + i)))
        elif i % 7 == 5:
            lines.append(_line(i, license_plate="7" * 30))  # in a string: the reference decides
        else:
            lines.append(_line(i))
    ref, _, summary = land_both(tmp_path, write_landing(tmp_path / "landing", lines), 2048)
    assert len(ref["wms_receipts"]) + len(ref["dead_letters"]) == len(lines)
    plain = sum(1 for i in range(30) if i % 7 not in (3, 5))
    assert summary.columnar_rows == plain, summary.columnar_rows
    assert json.loads(lines[0])["value"]["after"]["tracking_number"] == "1Z8E654E0000000002"


def test_source_and_row_image_keys_are_read_as_the_reference_reads_them(tmp_path):
    """A key of `source` or of the row image given twice, escaped or not (DuckDB would take the
    first, orjson takes the last), and every odd `source` land as the reference lands them."""
    base = _line(0)
    src = '"source":{"ts_ms":1794883548000,"lsn":99,"txId":7}'
    assert src in base
    odd_sources = [
        '"source":{"lsn":1,"lsn":2}',
        '"source":{"ts_ms":1794883548000,"ts_ms":1}',
        '"source":{"version":"a","version":"b","lsn":5}',
        '"source":{"\\u006csn":7,"lsn":8}',
        '"source":{"lsn":"5"}',
        '"source":{"lsn":1.5}',
        '"source":{"lsn":null,"txId":{"a":1}}',
        '"source":{}',
        '"source":[1,2]',
        '"source":5',
        '"source":"x"',
        '"source":null',
        '"source" : { "lsn" : 3 , "txId" : 4 }',
    ]
    lines = [base]
    for i, s in enumerate(odd_sources, start=1):
        lines.append(_line(i).replace(src, s))
    images = ['"receipt_id":40,"\\u0072eceipt_id":41', '"receipt_id":42,"dock":"a","dock":"b"']
    for i, image in enumerate(images, start=len(lines)):
        lines.append(_line(i).replace(f'"receipt_id":{i + 1}', image, 1))
    for offset in (30, 31):
        wrapped = json.loads(_line(offset))
        schema = {"type": "struct", "fields": []}
        wrapped["value"] = {"schema": schema, "payload": wrapped["value"]}
        lines.append(json.dumps(wrapped, separators=(",", ":")))
    lines[-1] = lines[-1].replace(src, '"source":{"lsn":1,"lsn":2}')
    ref, _, summary = land_both(tmp_path, write_landing(tmp_path / "landing", lines))
    assert len(ref["wms_receipts"]) + len(ref["dead_letters"]) == len(lines)
    # in SQL: the plain line, `source` null and spaced out, the wrapped line; the rest (any key
    # of `source` given twice, fields of another JSON type, `source` {} or no object: its key
    # list is empty either way) the reference decides
    assert summary.columnar_rows == 4, summary.columnar_rows


def test_envelopes_of_every_json_type_land_as_the_reference_lands_them(tmp_path):
    """No JSON type is asked of the envelope or payload: null or absent is a tombstone, an
    object is read, anything else (with no keys to list: {}, arrays, strings, numbers, booleans)
    the reference decides."""
    shapes = [None, {}, [1], "x", 5, 1.5, True, {"payload": None}, {"schema": None}]
    wrapped = [{"schema": {"type": "struct"}, "payload": p} for p in shapes]
    values = [*shapes, *wrapped, {"schema": None, "payload": None, "x": 1}]
    lines = [_line(0)]
    for i, value in enumerate(values, start=1):
        record = json.loads(_line(i))
        record["value"] = value
        lines.append(json.dumps(record, separators=(",", ":")))
    lines.append(_line(90).replace('"value":', '"vaLue":'))  # no value: a tombstone
    ref, _, summary = land_both(tmp_path, write_landing(tmp_path / "landing", lines))
    assert len(ref["wms_receipts"]) + len(ref["dead_letters"]) == len(lines)
    tombstones = [r for r in ref["wms_receipts"] if r[4] is True]  # _is_tombstone
    assert len(tombstones) >= 3, ref["wms_receipts"]
    assert summary.columnar_rows >= 4, summary.columnar_rows
