"""Hostile input for the CSV/TSV readers and the drop folders (DESIGN §12), each case with its
exact outcome: which lines land, which are dead letters with which reason, what is skipped.

Covers issue 19's cases: a latin-1 byte in an Amazon or B2B SKU (today `AMZ-�` landed and raised a
phantom credit_amount_mismatch), an unclosed quote folding the next rows into one dead letter, a
symbolic link to /etc/passwd read into the dead letters, UTF-16 handled per source, and a
directory named like a data file stopping the run; and more of the same kind.
"""

from __future__ import annotations

import codecs
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.lib.contracts import AMAZON_COLUMNS
from pipelines.lib.files import land_files, pending_files, sha256_of
from pipelines.lib.warehouse import connect

B2B_HEADER = (
    "request_id,account_number,po_number,erp_order_number,sku,quantity,unit_price,currency,"
    "reason_code,requested_at,status,approved_at"
)
AMAZON_HEADER = "\t".join(AMAZON_COLUMNS)  # the contract's header, as DESIGN §2.6 lists it
SKU_HEADER = "channel,channel_sku,erp_product_code"
WAREHOUSE_HEADER = "dc_code,erp_warehouse_code"


def b2b(request_id: str, sku: str = "SKU-1", quantity: str = "2", **kw: str) -> str:
    cells = {
        "request_id": request_id, "account_number": "ACC-1", "po_number": "PO-1",
        "erp_order_number": "SO-1", "sku": sku, "quantity": quantity, "unit_price": "12.50",
        "currency": "EUR", "reason_code": "DAMAGED", "requested_at": "2024-05-03T08:00:00Z",
        "status": "approved", "approved_at": "2024-05-04T00:00:00Z", **kw,
    }  # fmt: skip
    return ",".join(cells.values())


def amazon(rma: str, sku: str = "AMZ-1", **kw: str) -> str:
    cells = dict.fromkeys(AMAZON_COLUMNS, "")
    cells.update({
        "Order ID": "113-1", "Order date": "2024-04-20T08:00:00+00:00", "Amazon RMA ID": rma,
        "Return request status": "Approved", "Merchant SKU": sku, "Return quantity": "1",
        "Return reason": "DEFECTIVE", "Refunded Amount": "10.00", **kw,
    })  # fmt: skip
    return "\t".join(cells.values())


@pytest.fixture
def landing(tmp_path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def drop(landing: Path, rel: str, data: bytes | str) -> Path:
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def landed(con, table: str, column: str) -> list[tuple[int, object]]:
    return con.execute(f"select _row_number, {column} from raw.{table} order by 1").fetchall()


def letters(con, source: str, sha: str) -> list[tuple[int, str, str]]:
    rows = con.execute(
        "select position, raw, error from meta.dead_letters where source = ?", [source]
    ).fetchall()
    assert all(p.startswith(f"{sha}:") for p, _, _ in rows)
    return sorted((int(p.split(":")[1]), raw, error) for p, raw, error in rows)


def accounted(summary) -> None:
    """Every line of the files landed: header and blank lines + rows + dead letters."""
    assert summary.lines_read == summary.lines_ignored + summary.rows + summary.dead_letters


# -- encodings -----------------------------------------------------------------------------------


def test_latin1_byte_in_an_amazon_sku_is_an_invalid_encoding_dead_letter(landing, con):
    bad = amazon("RMA-2", sku="AMZ-\udce9").encode("utf-8", "surrogateescape")  # latin-1 é
    data = "\n".join([AMAZON_HEADER, amazon("RMA-1")]).encode() + b"\n" + bad + b"\n"
    data += (amazon("RMA-3") + "\n").encode()
    path = drop(landing, "amazon/returns_2024-05-02.tsv", data)

    result = land_files(con, landing)["amazon_returns"]

    assert landed(con, "amazon_returns", "amazon_rma_id") == [(1, "RMA-1"), (3, "RMA-3")]
    offset = bad.index(b"\xe9")
    [(number, raw, error)] = letters(con, "amazon", sha256_of(path))
    assert number == 2
    assert error == f"invalid_encoding: the line is not valid UTF-8: 0xe9 at byte {offset}"
    assert raw == bad.decode("utf-8", "replace")  # the other bytes kept; the bad one at `offset`
    assert "AMZ-\ufffd" in raw
    assert (result.rows, result.dead_letters, result.lines_read) == (2, 1, 4)
    accounted(result)


def test_latin1_bytes_in_a_b2b_sku_and_a_crosswalk(landing, con):
    b2b_bad = b2b("B-2", sku="WIDGET-\udce9\udcff").encode("utf-8", "surrogateescape")
    b2b_path = drop(
        landing,
        "b2b/r.csv",
        f"{B2B_HEADER}\n{b2b('B-1')}\n".encode() + b2b_bad + f"\n{b2b('B-3')}\n".encode(),
    )
    sku_path = drop(
        landing,
        "reference/sku_crosswalk.csv",
        f"{SKU_HEADER}\nb2b,WIDGET-1,P-1\n".encode() + b"b2b,WIDGET-\xe9,P-2\n",
    )

    result = land_files(con, landing)

    assert landed(con, "b2b_credit_requests", "request_id") == [(1, "B-1"), (3, "B-3")]
    at = b2b_bad.index(b"\xe9")
    assert letters(con, "b2b", sha256_of(b2b_path)) == [
        (
            2,
            b2b_bad.decode("utf-8", "replace"),
            "invalid_encoding: the line is not valid UTF-8: "
            f"0xe9 at byte {at}, 0xff at byte {at + 1}",
        )
    ]
    assert landed(con, "sku_crosswalk", "channel_sku") == [(1, "WIDGET-1")]
    assert letters(con, "reference", sha256_of(sku_path)) == [
        (
            2,
            "b2b,WIDGET-\ufffd,P-2",
            "invalid_encoding: the line is not valid UTF-8: 0xe9 at byte 11",
        )
    ]
    accounted(result["b2b_credit_requests"])
    accounted(result["sku_crosswalk"])


def test_overlong_and_surrogate_utf8_sequences_are_invalid(landing, con):
    path = drop(
        landing,
        "reference/warehouse_crosswalk.csv",
        f"{WAREHOUSE_HEADER}\nDC-1,WH-1\n".encode()
        + b"DC-\xc0\xaf,WH-2\n"  # overlong '/'
        + b"DC-\xed\xa0\x80,WH-3\n"  # an encoded surrogate
        + b"DC-4,WH-4",  # no newline at the end
    )

    result = land_files(con, landing)["warehouse_crosswalk"]

    assert landed(con, "warehouse_crosswalk", "dc_code") == [(1, "DC-1"), (4, "DC-4")]
    errors = [(n, e) for n, _, e in letters(con, "reference", sha256_of(path))]
    assert errors == [
        (2, "invalid_encoding: the line is not valid UTF-8: 0xc0 at byte 3, 0xaf at byte 4"),
        (3, "invalid_encoding: the line is not valid UTF-8: 0xed at byte 3, 0xa0 at byte 4, "
            "0x80 at byte 5"),
    ]  # fmt: skip
    assert (result.lines_read, result.lines_ignored) == (5, 1)
    accounted(result)


QUOTED = '"DAMAGED, ""crushed"""'  # a quoted comma and doubled quotes
SAMPLES = {
    "amazon/returns_2024-05-02.tsv": (
        f"{AMAZON_HEADER}\n{amazon('RMA-Ü1', sku='AMZ-ß')}\n{amazon('RMA-2')}\n",
        "amazon_returns",
        "amazon_rma_id, merchant_sku",
    ),
    "b2b/r.csv": (
        f"{B2B_HEADER}\n{b2b('B-1', sku='WIDGET-é')}\n{b2b('B-2', reason_code=QUOTED)}\n",
        "b2b_credit_requests",
        "request_id, sku, reason_code",
    ),
    "reference/sku_crosswalk.csv": (
        f"{SKU_HEADER}\namazon,AMZ-ß,P-1\nshopify,日本-1,P-2\n",
        "sku_crosswalk",
        "channel, channel_sku, erp_product_code",
    ),
    "reference/warehouse_crosswalk.csv": (
        f"{WAREHOUSE_HEADER}\r\nDC-EAST,WH-É\r\nDC-WEST,WH-W\r\n",
        "warehouse_crosswalk",
        "dc_code, erp_warehouse_code",
    ),
}


@pytest.mark.parametrize("rel", sorted(SAMPLES))
@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda t: codecs.BOM_UTF8 + t.encode("utf-8"), id="utf-8-bom"),
        pytest.param(lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"), id="utf-16-le"),
        pytest.param(lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), id="utf-16-be"),
    ],
)
def test_every_source_reads_bom_and_utf16_files_as_the_same_rows(tmp_path, rel, encode):
    text, table, columns = SAMPLES[rel]
    outcomes = []
    for name, data in (("plain", text.encode("utf-8")), ("encoded", encode(text))):
        landing = tmp_path / name
        drop(landing, rel, data)
        con = connect(tmp_path / f"{name}.duckdb")
        result = land_files(con, landing)[table]
        outcomes.append((landed(con, table, columns), result.dead_letters, result.lines_read))
        con.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == 0 and len(outcomes[0][0]) == 2


def test_utf16_line_with_a_lone_surrogate_is_dead_lettered_alone(landing, con):
    good1 = f"{SKU_HEADER}\namazon,A-1,P-1\n".encode("utf-16-le")
    bad = "amazon,A-".encode("utf-16-le") + b"\x00\xd8" + ",P-2\n".encode("utf-16-le")
    good2 = "amazon,A-3,P-3".encode("utf-16-le")  # and no final newline
    path = drop(landing, "reference/sku_crosswalk.csv", codecs.BOM_UTF16_LE + good1 + bad + good2)

    result = land_files(con, landing)["sku_crosswalk"]

    assert landed(con, "sku_crosswalk", "channel_sku") == [(1, "A-1"), (3, "A-3")]
    assert letters(con, "reference", sha256_of(path)) == [
        (
            2,
            "amazon,A-\ufffd,P-2",
            "invalid_encoding: the line is not valid UTF-16LE: 0x00d8 at byte 18",
        )
    ]
    accounted(result)


def test_header_that_is_not_utf8_quarantines_the_file(landing, con):
    drop(landing, "b2b/r.csv", B2B_HEADER.replace("sku", "s\xe9ku").encode("latin-1") + b"\n")

    [q] = land_files(con, landing)["b2b_credit_requests"].quarantined

    assert q.reason.startswith("header row: invalid_encoding: the line is not valid UTF-8: 0xe9")


# -- one record per physical line ----------------------------------------------------------------


def test_unclosed_quote_dead_letters_its_line_only(landing, con):
    unclosed = b2b("B-2", reason_code='"DAMAGED, crushed')
    path = drop(
        landing,
        "b2b/r.csv",
        "\n".join([B2B_HEADER, b2b("B-1"), unclosed, b2b("B-3"), b2b("B-4"), ""]),
    )

    result = land_files(con, landing)["b2b_credit_requests"]

    assert landed(con, "b2b_credit_requests", "request_id") == [(1, "B-1"), (3, "B-3"), (4, "B-4")]
    assert letters(con, "b2b", sha256_of(path)) == [
        (
            2,
            unclosed,
            "bad row: unclosed quote (a quoted field is still open at the end of the line)",
        )
    ]
    accounted(result)


def test_quoted_line_break_is_two_dead_letters_not_a_merged_row(landing, con):
    first, second = (
        'B-2,ACC-1,PO-1,SO-1,SKU-1,2,12.50,EUR,"DAMAGED',
        'crushed",2024-05-03,approved,',
    )
    path = drop(landing, "b2b/r.csv", "\n".join([B2B_HEADER, first, second, b2b("B-3"), ""]))

    result = land_files(con, landing)["b2b_credit_requests"]

    assert landed(con, "b2b_credit_requests", "request_id") == [(3, "B-3")]
    assert letters(con, "b2b", sha256_of(path)) == [
        (1, first, "bad row: unclosed quote (a quoted field is still open at the end of the line)"),
        (2, second, "row has 4 fields, the header has 12"),
    ]
    accounted(result)


def test_tsv_quotes_are_ordinary_characters_and_crs_and_blanks(landing, con):
    quoted = amazon("RMA-2", **{"Item Name": '"Widget 10" "deluxe'})
    lone_cr = "x\ry"
    data = "\r\n".join([AMAZON_HEADER, amazon("RMA-1"), "", "   ", quoted, lone_cr, ""])
    path = drop(landing, "amazon/returns_2024-05-02.tsv", data)

    result = land_files(con, landing)["amazon_returns"]

    assert landed(con, "amazon_returns", "item_name") == [(1, None), (4, '"Widget 10" "deluxe')]
    [(number, raw, error)] = letters(con, "amazon", sha256_of(path))
    assert (number, raw) == (5, lone_cr)
    assert error.startswith("bad row: new-line character seen in unquoted field")
    assert (result.lines_read, result.lines_ignored, result.rows) == (6, 3, 2)  # header + 2 blank
    accounted(result)


# -- values at type limits -----------------------------------------------------------------------


def test_values_at_type_limits(landing, con):
    lines = [
        b2b("B-1", requested_at="0001-01-01T00:00:00Z", approved_at="9999-12-31T23:59:59Z"),
        b2b("B-2", requested_at="0001-01-01T00:00:00+14:00"),  # year 0 in UTC
        b2b("B-3", approved_at="9999-12-31T23:59:59-01:00"),  # year 10000 in UTC
        b2b("B-4", requested_at="infinity"),
        b2b("B-5", quantity="999999999.999"),  # decimal(12,3): the largest
        b2b("B-6", quantity="1000000000"),  # one too many digits
        b2b("B-7", unit_price="1e400"),
        b2b("B-8", quantity="", sku=""),
    ]
    path = drop(landing, "b2b/r.csv", "\n".join([B2B_HEADER, *lines]) + "\n")

    result = land_files(con, landing)["b2b_credit_requests"]

    got = con.execute(
        "select request_id, requested_at, approved_at, quantity from raw.b2b_credit_requests "
        "order by _row_number"
    ).fetchall()
    assert got == [
        ("B-1", datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
         Decimal(2)),
        ("B-5", datetime(2024, 5, 3, 8, tzinfo=UTC), datetime(2024, 5, 4, tzinfo=UTC),
         Decimal("999999999.999")),
    ]  # fmt: skip
    assert [(n, e) for n, _, e in letters(con, "b2b", sha256_of(path))] == [
        (2, "time out of range in 'requested_at': '0001-01-01T00:00:00+14:00'"),
        (3, "time out of range in 'approved_at': '9999-12-31T23:59:59-01:00'"),
        (4, "time out of range in 'requested_at': 'infinity'"),
        (6, "bad number in 'quantity': '1000000000'"),
        (7, "bad number in 'unit_price': '1e400'"),
        (8, "missing required field 'sku'; missing required field 'quantity'"),
    ]
    accounted(result)


def test_amazon_integer_limits(landing, con):
    rows = [amazon("RMA-1", **{"Return quantity": "2147483647"}),
            amazon("RMA-2", **{"Return quantity": "2147483648"}),
            amazon("RMA-3", **{"Order quantity": "-99999999999999999999"})]  # fmt: skip
    path = drop(landing, "amazon/returns_2024-05-02.tsv", "\n".join([AMAZON_HEADER, *rows]))

    land_files(con, landing)

    assert landed(con, "amazon_returns", "return_quantity") == [(1, 2147483647)]
    assert [(n, e) for n, _, e in letters(con, "amazon", sha256_of(path))] == [
        (2, "bad integer in 'Return quantity': '2147483648'"),
        (3, "bad integer in 'Order quantity': '-99999999999999999999'"),
    ]


# -- headers as the real reports spell them --------------------------------------------------------


def test_amazon_header_matches_case_and_space_insensitively(landing, con):
    header = [" ".join(h.upper().split()) if h != "Return reason" else "Return  Reason"
              for h in AMAZON_COLUMNS]  # fmt: skip
    drop(landing, "amazon/returns_2024-05-02.tsv", "\t".join(header) + "\n" + amazon("RMA-1"))

    result = land_files(con, landing)["amazon_returns"]

    assert not result.quarantined
    assert landed(con, "amazon_returns", "return_reason") == [(1, "DEFECTIVE")]
    assert con.execute("select _extra from raw.amazon_returns").fetchone()[0] is None


def test_header_spelled_twice_in_two_cases_is_a_duplicate(landing, con):
    drop(landing, "reference/warehouse_crosswalk.csv", "dc_code,DC_Code,erp_warehouse_code\n")

    [q] = land_files(con, landing)["warehouse_crosswalk"].quarantined

    assert q.reason == "duplicate header column(s): 'DC_Code', 'dc_code'"


# -- drop folders --------------------------------------------------------------------------------


def test_symlink_to_a_secret_is_not_followed(tmp_path, landing, con):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" * 24)
    (landing / "b2b").mkdir()
    (landing / "b2b" / "x.csv").symlink_to(secret)
    ok = drop(landing, "b2b/ok.csv", f"{B2B_HEADER}\n{b2b('B-1')}\n")

    result = land_files(con, landing)["b2b_credit_requests"]

    assert [(p.path, p.reason) for p in result.skipped] == [
        ("b2b/x.csv", "symbolic link: not followed")
    ]
    assert result.rows == 1 and result.files_landed == 1
    assert con.execute("select count(*) from meta.dead_letters").fetchone()[0] == 0
    assert con.execute("select count(*) from meta.quarantine").fetchone()[0] == 0
    assert pending_files(landing, con) == [] and ok.exists() and secret.exists()


def test_symlinked_source_folder_is_not_followed(tmp_path, landing, con):
    elsewhere = tmp_path / "elsewhere"
    drop(elsewhere, "r.csv", f"{B2B_HEADER}\n{b2b('B-1')}\n")
    (landing / "b2b").symlink_to(elsewhere, target_is_directory=True)

    result = land_files(con, landing)["b2b_credit_requests"]

    assert [(p.path, p.reason) for p in result.skipped] == [("b2b", "symbolic link: not followed")]
    assert result.files_landed == 0 and pending_files(landing, None) == []


def test_directory_and_fifo_named_like_data_files_are_skipped_and_reported(landing, con):
    (landing / "b2b" / "x.csv").mkdir(parents=True)
    (landing / "reference").mkdir()
    os.mkfifo(landing / "reference" / "sku_crosswalk.csv")  # opening it would block forever
    drop(landing, "b2b/ok.csv", f"{B2B_HEADER}\n{b2b('B-1')}\n")
    (landing / "amazon").write_text("a file where a folder belongs")

    result = land_files(con, landing)

    assert [(p.path, p.reason) for p in result["b2b_credit_requests"].skipped] == [
        ("b2b/x.csv", "not a regular file (a directory)")
    ]
    assert [(p.path, p.reason) for p in result["sku_crosswalk"].skipped] == [
        ("reference/sku_crosswalk.csv", "not a regular file (a FIFO)")
    ]
    assert [(p.path, p.reason) for p in result["amazon_returns"].skipped] == [
        ("amazon", "not a directory")
    ]
    assert result["b2b_credit_requests"].rows == 1
    assert [rel for _, rel, _ in pending_files(landing, con)] == []


def test_a_file_that_vanishes_or_cannot_be_read_is_skipped(landing, con, monkeypatch):
    import pipelines.lib.files.landing as landing_module

    drop(landing, "b2b/a.csv", f"{B2B_HEADER}\n{b2b('B-1')}\n")
    drop(landing, "b2b/b.csv", f"{B2B_HEADER}\n{b2b('B-2')}\n")
    real = landing_module.sha256_cached

    def flaky(con, path):
        if path.name == "a.csv":
            raise PermissionError(13, "Permission denied")
        return real(con, path)

    monkeypatch.setattr(landing_module, "sha256_cached", flaky)
    result = land_files(con, landing)["b2b_credit_requests"]

    assert [(p.path, p.reason) for p in result.skipped] == [
        ("b2b/a.csv", "unreadable: Permission denied")
    ]
    assert landed(con, "b2b_credit_requests", "request_id") == [(1, "B-2")]
    monkeypatch.undo()
    assert land_files(con, landing)["b2b_credit_requests"].files_landed == 1  # next run: lands


def test_skipped_paths_and_line_accounting_reach_the_asset_metadata(tmp_path, landing):
    import dagster as dg

    from assets.files import file_assets
    from pipelines.resources import SettingsResource

    (landing / "b2b" / "dir.csv").mkdir(parents=True)
    (landing / "b2b" / "link.csv").symlink_to(tmp_path)
    drop(
        landing, "b2b/a.csv", f"{B2B_HEADER}\n{b2b('B-1')}\n\nnot,a,row\n{b2b('B-2', quantity='x')}"
    )
    [asset] = [a for a in file_assets if a.key.path == ["raw", "b2b_credit_requests"]]
    settings = SettingsResource(db_path=str(tmp_path / "w.duckdb"), landing_dir=str(landing))

    result = dg.materialize([asset], resources={"settings": settings})

    [materialization] = result.asset_materializations_for_node(asset.op.name)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["skipped_paths"] == [
        {"path": "b2b/dir.csv", "reason": "not a regular file (a directory)"},
        {"path": "b2b/link.csv", "reason": "symbolic link: not followed"},
    ]
    assert (meta["lines_read"], meta["lines_ignored"], meta["rows"], meta["dead_letters"]) == (
        5, 2, 1, 2,
    )  # fmt: skip
    con = connect(tmp_path / "w.duckdb")
    ledger = con.execute(
        "select l.lines_read, l.lines_ignored + f.rows_landed + f.dead_letters "
        "from meta.file_lines l join meta.files_landed f using (sha256)"
    ).fetchall()
    con.close()
    assert ledger == [(5, 5)]


def test_a_binary_line_names_its_first_eight_bad_bytes_and_lands_nothing_else(landing, con):
    garbage = bytes(range(0x80, 0x100)) * 4096  # 512 KiB that no UTF-8 decoder accepts
    path = drop(landing, "reference/warehouse_crosswalk.csv", b"dc_code,erp_warehouse_code\n"
                + garbage + b"\nDC-1,WH-1\n")  # fmt: skip

    result = land_files(con, landing)["warehouse_crosswalk"]

    [(number, raw, error)] = letters(con, "reference", sha256_of(path))
    shown = ", ".join(f"0x{b:02x} at byte {b - 0x80}" for b in range(0x80, 0x88))
    assert (number, error) == (
        1,
        f"invalid_encoding: the line is not valid UTF-8: {shown} and more",
    )
    assert raw == "\ufffd" * len(garbage)
    assert landed(con, "warehouse_crosswalk", "dc_code") == [(2, "DC-1")]
    accounted(result)
