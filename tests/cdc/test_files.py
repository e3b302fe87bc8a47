"""Embedded mode: Kafka records from `<landing>/cdc/*.ndjson`, ledgered by file and position."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest

from pipelines.lib import warehouse
from pipelines.lib.cdc import files
from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.cdc.land import resume_offsets

INVOICES = "erp.public.account_invoice"
RECEIPTS = "wms.public.receipts"


@pytest.fixture
def con(tmp_path):
    c = warehouse.connect(tmp_path / "warehouse.duckdb")
    yield c
    c.close()


@pytest.fixture
def landing(tmp_path):
    d = tmp_path / "landing"
    (d / "cdc").mkdir(parents=True)
    (d / "cdc" / "connectors.json").write_text(
        json.dumps(
            {
                "erp": {"decimal.handling.mode": "precise"},
                "wms": {"decimal.handling.mode": "string"},
            }
        )
    )
    return d


def record(topic, offset, key, value, partition=0):
    return json.dumps(
        {"topic": topic, "partition": partition, "offset": offset, "key": key, "value": value}
    )


def invoice_env(inv_id, total="AeJA", ts=1_700_000_000_000):
    return {
        "after": {"id": inv_id, "number": f"INV-{inv_id}", "total_amount_cache": total},
        "source": {"ts_ms": ts, "lsn": inv_id},
        "op": "c",
        "ts_ms": ts,
    }


def receipt_env(rid, quantity):
    return {
        "after": {"receipt_id": rid, "dc_code": "DC-WEST", "quantity": quantity},
        "source": {"ts_ms": 1_700_000_000_000},
        "op": "r",
    }


LINES = [
    record(INVOICES, 0, {"id": 1}, invoice_env(1)),  # line 1
    record(RECEIPTS, 0, {"receipt_id": 5}, receipt_env(5, "3.250")),  # line 2
    "this is not JSON",  # line 3: dead letter by file position
    record(INVOICES, 1, {"id": 1}, None),  # line 4: tombstone
    json.dumps({"topic": INVOICES, "partition": 0, "key": {"id": 2}}),  # line 5: no offset
    "",  # line 6: blank, ignored
    record(INVOICES, 2, {"id": 3}, '{"op": "c", "after": {"id": 3'),  # line 7: malformed value
    record(INVOICES, 3, {"id": 4}, invoice_env(4, total="/h3A")),  # line 8
]


def write(landing, name, lines):
    path = landing / "cdc" / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lands_records_and_dead_letters(con, landing):
    path = write(landing, "erp-0001.ndjson", LINES)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    summary = land_cdc_files(con, landing, progress=False)
    assert summary.files_landed == ["cdc/erp-0001.ndjson"]
    assert summary.landed == {"erp_account_invoice": 3, "wms_receipts": 1}
    assert summary.bad_lines == 2
    assert summary.dead_letters == 3  # two bad lines, one malformed Kafka value
    # every line accounted for: 8 read = 1 blank + 4 landed + 3 dead letters + 0 duplicates
    assert (summary.lines_read, summary.blank_lines, summary.duplicates) == (8, 1, 0)
    assert summary.unaccounted == 0
    rows = con.execute(
        "select _offset, _op, _is_tombstone, id, total_amount_cache "
        "from raw.erp_account_invoice order by _offset"
    ).fetchall()
    assert rows == [
        (0, "c", False, 1, Decimal("1234.56")),
        (1, "d", True, 1, None),
        (3, "c", False, 4, Decimal("-1234.56")),
    ]
    assert con.execute("select quantity from raw.wms_receipts").fetchone()[0] == Decimal("3.250")
    letters = dict(con.execute("select position, error from meta.dead_letters").fetchall())
    assert letters[f"{sha}:3"].startswith("line: bad JSON")
    assert letters[f"{sha}:5"] == "offset: missing"
    assert letters[f"{INVOICES}:0:2"].startswith("value: bad JSON")
    raw = con.execute(
        "select raw from meta.dead_letters where position = ?", [f"{INVOICES}:0:2"]
    ).fetchone()[0]
    assert raw == '{"op": "c", "after": {"id": 3'
    assert resume_offsets(con, "file") == {(INVOICES, 0): 4, (RECEIPTS, 0): 1}
    ledger = con.execute(
        "select sha256, source, path, rows_landed, dead_letters from meta.files_landed"
    ).fetchall()
    assert ledger == [(sha, "cdc", "cdc/erp-0001.ndjson", 4, 3)]


def test_redrop_changes_nothing(con, landing):
    write(landing, "a.ndjson", LINES)
    land_cdc_files(con, landing, progress=False)
    snapshot = con.execute(
        "select * exclude (_ingested_at) from raw.erp_account_invoice"
    ).fetchall()
    again = land_cdc_files(con, landing, progress=False)
    assert again.files_skipped == ["cdc/a.ndjson"] and again.files_landed == []
    assert again.lines_read == 0  # a file skipped whole is not read
    write(landing, "a-copy.ndjson", LINES)  # the same content under another name
    copy = land_cdc_files(con, landing, progress=False)
    assert copy.files_skipped == ["cdc/a-copy.ndjson", "cdc/a.ndjson"]
    assert sorted(
        con.execute("select * exclude (_ingested_at) from raw.erp_account_invoice").fetchall()
    ) == sorted(snapshot)
    assert con.execute("select count(*) from meta.dead_letters").fetchone()[0] == 3


def test_a_file_rewritten_in_place_is_hashed_again_and_lands(con, landing):
    """The sha256 is cached by (path, size, mtime, inode): a new content under the same name
    is noticed, hashed again and landed; the unchanged file is skipped without landing twice."""
    import os

    path = write(landing, "grow.ndjson", [record(INVOICES, 0, {"id": 0}, invoice_env(0))])
    old = os.stat(path)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))  # not "racily clean"
    assert land_cdc_files(con, landing, progress=False).landed == {"erp_account_invoice": 1}
    cached = con.execute("select count(*) from meta.file_hashes").fetchone()[0]
    assert cached == 1
    assert land_cdc_files(con, landing, progress=False).files_skipped == ["cdc/grow.ndjson"]
    write(landing, "grow.ndjson", [record(INVOICES, i, {"id": i}, invoice_env(i)) for i in (0, 1)])
    again = land_cdc_files(con, landing, progress=False)
    assert again.files_landed == ["cdc/grow.ndjson"]
    assert again.landed == {"erp_account_invoice": 1} and again.result.skipped == 1
    assert (again.lines_read, again.duplicates, again.unaccounted) == (2, 1, 0)
    assert con.execute("select count(*) from raw.erp_account_invoice").fetchone()[0] == 2


def test_overlapping_files_land_each_position_once(con, landing):
    write(landing, "1.ndjson", [record(INVOICES, i, {"id": i}, invoice_env(i)) for i in range(5)])
    write(
        landing, "2.ndjson", [record(INVOICES, i, {"id": i}, invoice_env(i)) for i in range(3, 8)]
    )
    summary = land_cdc_files(con, landing, progress=False)
    assert summary.landed == {"erp_account_invoice": 8}
    assert summary.result.skipped == 2
    assert len(summary.files_landed) == 2


def test_batches_and_a_crash_in_the_middle(con, landing, monkeypatch):
    write(landing, "big.ndjson", [record(INVOICES, i, {"id": i}, invoice_env(i)) for i in range(7)])
    real = files.land_batch
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "land_batch", crash_on_second)
    with pytest.raises(RuntimeError):
        land_cdc_files(con, landing, progress=False, batch_size=3)
    assert con.execute("select count(*) from raw.erp_account_invoice").fetchone()[0] == 3
    assert con.execute("select count(*) from meta.files_landed").fetchone()[0] == 0
    monkeypatch.setattr(files, "land_batch", real)
    summary = land_cdc_files(con, landing, progress=False, batch_size=3)
    assert summary.landed == {"erp_account_invoice": 4} and summary.result.skipped == 3
    assert con.execute("select count(*) from raw.erp_account_invoice").fetchone()[0] == 7
    assert con.execute("select rows_landed from meta.files_landed").fetchone()[0] == 4


@pytest.mark.parametrize(
    "line,reason",
    [
        ("[1, 2]", "line: expected a JSON object {topic, partition, offset, key, value}"),
        (json.dumps({"partition": 0, "offset": 1}), "topic: missing"),
        (json.dumps({"topic": INVOICES, "offset": 1}), "partition: missing"),
        (
            json.dumps({"topic": INVOICES, "partition": "0", "offset": 1}),
            "partition: expected a non-negative integer, got '0'",
        ),
        (
            json.dumps({"topic": INVOICES, "partition": 0, "offset": -1}),
            "offset: expected a non-negative integer, got -1",
        ),
    ],
)
def test_malformed_lines(line, reason):
    letter = files.parse_line(line.encode(), "abc", 7)
    assert (letter.source, letter.position, letter.error, letter.raw) == (
        "cdc",
        "abc:7",
        reason,
        line,
    )


def test_no_cdc_directory(con, tmp_path):
    summary = land_cdc_files(con, tmp_path, progress=False)
    assert summary.files_landed == [] and summary.landed == {}


def test_landing_asset_in_file_mode(settings_env):
    import dagster as dg

    from assets.cdc import CDC_ASSET_KEYS, cdc_landing
    from pipelines.resources import SettingsResource

    cdc = settings_env.landing_dir / "cdc"
    cdc.mkdir()
    write(settings_env.landing_dir, "erp-0001.ndjson", LINES)
    (cdc / "x.ndjson").mkdir()  # issue 19: failed every run (IsADirectoryError)
    resources = {
        "settings": SettingsResource(
            db_path=str(settings_env.db_path), landing_dir=str(settings_env.landing_dir)
        )
    }
    result = dg.materialize([cdc_landing], resources=resources)
    assert result.success
    mats = {
        m.asset_key.path[-1]: m.metadata
        for m in result.asset_materializations_for_node("cdc_landing")
    }
    assert set(mats) == {k.path[-1] for k in CDC_ASSET_KEYS}
    invoices = mats["erp_account_invoice"]
    assert invoices["rows_landed"].value == 3
    assert invoices["dead_letters"].value == 1
    assert invoices["last_source_change_at"].value == 1_700_000_000.0
    assert mats["wms_receipts"]["rows_landed"].value == 1
    assert mats["erp_sale_sale"]["rows_landed"].value == 0
    assert invoices["files_landed"].value == 1
    assert invoices["files_ignored"].value == [
        {"path": "cdc/x.ndjson", "reason": "not read: a directory"}
    ]
    assert invoices["lines_read"].value == len(LINES)
    # a second run finds nothing new
    again = dg.materialize([cdc_landing], resources=resources)
    mats = {
        m.asset_key.path[-1]: m.metadata
        for m in again.asset_materializations_for_node("cdc_landing")
    }
    assert mats["erp_account_invoice"]["rows_landed"].value == 0
    assert mats["erp_account_invoice"]["files_skipped"].value == 1
