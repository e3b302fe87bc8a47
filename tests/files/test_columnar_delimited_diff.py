"""CSV/TSV drops read column-wise (`delimited._read_columnar`: the lines whose fields are certain
split by DuckDB, the others read by the csv module) against the reference (every line by the csv
module): identical raw tables, ledgers and dead letters (positions, errors), over Amazon's own
samples (../shared/fixtures/amazon_sp_api), the hostile CSV/TSV lines of tests/hostile, lines at
the edges of what the column-wise reader takes, several chunk and batch sizes, and UTF-16 files.
The simulated landscapes (seeds 3, 11, 29, with faults) are in test_columnar_files_diff."""

from __future__ import annotations

import codecs

import pytest

from pipelines.lib.files import delimited
from tests.files.test_amazon_real_samples import documented_header, report_row, sample_returns
from tests.files.test_columnar_files_diff import land_both
from tests.hostile.test_delimited import (
    AMAZON_HEADER,
    B2B_HEADER,
    QUOTED,
    SAMPLES,
    SKU_HEADER,
    amazon,
    b2b,
)

LATIN1 = "\udce9"  # a latin-1 é, written with surrogateescape: not UTF-8


def _bytes(lines: list[str], end: str = "\n", last: bool = True) -> bytes:
    text = end.join(lines) + (end if last else "")
    return text.encode("utf-8", "surrogateescape")


B2B_LINES = [
    b2b("B-1"),
    b2b("B-2", reason_code=QUOTED),  # quoted: the reference's
    b2b("B-3", reason_code='"DAMAGED'),  # unclosed quote
    b2b("B-4", reason_code='DAM"AGED'),  # a quote inside an unquoted field (csv keeps it)
    b2b("B-5", sku=f"SKU-{LATIN1}"),  # invalid UTF-8
    b2b("B-6", quantity="x", unit_price="1e3"),  # bad values: the typing SQL's dead letters
    b2b("B-7", quantity=" 7 ", unit_price="+.5"),
    b2b("B-8", requested_at="0001-01-01T00:00:00Z", approved_at="10000-01-01T00:00:00Z"),
    "",
    "   ",
    ",,,,,,,,,,,",  # all empty: missing required fields
    ",,,,",  # too few fields
    b2b("B-9") + ",extra",  # too many
    b2b("B-10", sku="a\rb"),  # a lone carriage return
    b2b("B-11") + "\r\r",  # two before the line end
    b2b("B-12", sku="N\x00UL"),
    b2b("B-13", sku="\ufeffBOM"),  # a byte order mark inside a line
    b2b("B-14", sku="日本-€-😀"),
    b2b("B-15", sku=" SKU "),  # spaces kept, as the csv module keeps them
    "\t",
    b2b("B-16", quantity="2147483648"),
    b2b("B-17", reason_code="\\"),
]
AMAZON_LINES = [
    amazon("RMA-1"),
    amazon("RMA-2", **{"Item Name": '"Widget 10" "deluxe'}),  # quotes are ordinary in a TSV
    amazon("RMA-3", sku=f"AMZ-{LATIN1}"),
    amazon("RMA-4", **{"Return quantity": "-1", "Refunded Amount": "abc"}),
    amazon("RMA-5", **{"Order date": "2024-02-30T00:00:00Z"}),
    "x\ry",
    "",
    "\t" * 5,
    amazon("RMA-6") + "\t",
    amazon("RMA-7", **{"Item Name": "a,b;c|d"}),
    amazon("RMA-8", **{"Return request date": "9999-12-31T23:59:59-01:00"}),
]
SKU_LINES = [
    "amazon,A-1,P-1",
    'shopify,"S,1",P-2',
    "amazon,A-3",
    "amazon,A-4,P-4,",
    f"amazon,A-{LATIN1},P-5",
    "b2b, B-6 ,P-6",
]


def _drop(landing, rel: str, data: bytes) -> None:
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _columnar_share(col: dict, table: str) -> int:
    return col["columnar_rows"][table]


def test_amazon_samples_land_alike_and_column_wise(tmp_path):
    header = documented_header()
    rows = [report_row(header, r) for r in sample_returns()]
    landing = tmp_path / "landing"
    _drop(landing, "amazon/returns_2024-05-02.tsv", _bytes(["\t".join(header), *rows]))
    crlf = _bytes(["\t".join(header), *rows[::-1]], end="\r\n", last=False)
    _drop(landing, "amazon/returns_2024-05-03.tsv", codecs.BOM_UTF8 + crlf)
    ref, col, _ = land_both(tmp_path, landing)
    assert len(ref["amazon_returns"]) == 2 * len(rows) >= 20
    assert _columnar_share(col, "amazon_returns") == len(ref["amazon_returns"])
    assert not ref["dead_letters"]


@pytest.mark.parametrize(
    ("batch_rows", "batch_bytes"),
    [(7, 4 << 20), (2, 300), (1000, 64)],
    ids=["rows", "small", "tiny"],
)
def test_hostile_and_edge_lines_land_alike(tmp_path, batch_rows, batch_bytes):
    landing = tmp_path / "landing"
    _drop(landing, "b2b/lf.csv", _bytes([B2B_HEADER, *B2B_LINES]))
    _drop(landing, "b2b/crlf.csv", _bytes([B2B_HEADER, *B2B_LINES[::-1]], "\r\n", last=False))
    _drop(landing, "b2b/cr-at-end.csv", _bytes([B2B_HEADER, b2b("C-1"), "\r"], last=False))
    _drop(landing, "b2b/bom.csv", codecs.BOM_UTF8 + _bytes([B2B_HEADER, b2b("D-1"), b2b("D-2")]))
    _drop(landing, "b2b/header-only.csv", _bytes([B2B_HEADER], last=False))
    _drop(landing, "amazon/returns_2024-05-02.tsv", _bytes([AMAZON_HEADER, *AMAZON_LINES]))
    _drop(
        landing,
        "amazon/returns_2024-05-03.tsv",
        _bytes([AMAZON_HEADER, *AMAZON_LINES[::-1]], "\r\n"),
    )
    _drop(landing, "reference/sku_crosswalk.csv", _bytes([SKU_HEADER, *SKU_LINES], last=False))
    utf16 = "\n".join([B2B_HEADER, b2b("U-1"), b2b("U-2", reason_code=QUOTED), ""])
    _drop(landing, "b2b/utf16.csv", codecs.BOM_UTF16_LE + utf16.encode("utf-16-le"))
    ref, col, _ = land_both(tmp_path, landing, batch_rows=batch_rows, batch_bytes=batch_bytes)
    assert len(ref["dead_letters"]) > 30
    assert ref["summaries"]["b2b_credit_requests"][0] == 6  # every file landed
    # the plain lines were split by DuckDB (the two of the UTF-16 file by the reference)
    b2b_rows = len(ref["b2b_credit_requests"])
    assert 0 < _columnar_share(col, "b2b_credit_requests") <= b2b_rows - 2
    # every Amazon row that lands is a certain line (quotes are ordinary in a TSV)
    assert _columnar_share(col, "amazon_returns") == len(ref["amazon_returns"]) > 0
    assert _columnar_share(col, "sku_crosswalk") == len(ref["sku_crosswalk"]) - 1  # "S,1"


def test_hostile_samples_land_alike_with_and_without_a_bom(tmp_path):
    """tests/hostile's per-source samples, plain and (Amazon, B2B) again with a UTF-8 BOM."""
    landing = tmp_path / "landing"
    for rel, (text, _, _) in SAMPLES.items():
        _drop(landing, rel, text.encode("utf-8"))
    again = {"amazon/returns_2024-05-09.tsv": "amazon", "b2b/bom.csv": "b2b"}
    for rel, folder in again.items():
        [text] = [t for r, (t, _, _) in SAMPLES.items() if r.startswith(folder)]
        _drop(landing, rel, codecs.BOM_UTF8 + text.encode("utf-8"))
    ref, col, _ = land_both(tmp_path, landing)
    assert len(ref["amazon_returns"]) == 4 and len(ref["b2b_credit_requests"]) == 4
    assert col["columnar_rows"]["amazon_returns"] == 4  # quotes are ordinary in a TSV
    assert col["columnar_rows"]["b2b_credit_requests"] == 2  # the quoted lines: the reference's


def test_the_column_wise_reader_leaves_utf16_files_to_the_reference(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(codecs.BOM_UTF16_BE + "a,b\n".encode("utf-16-be"))
    assert not delimited._columnar_file(path)
    path.write_bytes(codecs.BOM_UTF8 + b"a,b\n")
    assert delimited._columnar_file(path)
