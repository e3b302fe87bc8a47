"""The sha256 cache (`pipelines.lib.filehash`) and the file ledger that relies on it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pipelines.lib.filehash import ensure_table, sha256_cached, sha256_of
from pipelines.lib.files import land_files
from pipelines.lib.warehouse import connect

HOUR_NS = 3600 * 10**9


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def refund(refund_id: int, note: str) -> str:
    record = {
        "id": refund_id,
        "order_id": 450789469,
        "created_at": "2024-05-02T10:00:00-04:00",
        "note": note,
    }
    return json.dumps(record) + "\n"


def drop(path: Path, text: str, age_hours: int) -> Path:
    """Write `path` and date it `age_hours` ago (older than the racy window, so it is cached)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    mtime = time.time_ns() - age_hours * HOUR_NS
    os.utime(path, ns=(mtime, mtime))
    return path


def cached(con, path: Path) -> tuple | None:
    return con.execute(
        "select size, mtime_ns, sha256 from meta.file_hashes where path = ?",
        [str(path.absolute())],
    ).fetchone()


def test_hash_is_cached_by_size_mtime_and_inode(tmp_path, con):
    path = drop(tmp_path / "a.ndjson", refund(1, "first"), age_hours=5)
    sha = sha256_cached(con, path)
    assert sha == sha256_of(path)
    assert cached(con, path) == (path.stat().st_size, path.stat().st_mtime_ns, sha)
    # same size, same mtime, same inode: the cache answers without reading the bytes (which is
    # why a writer that keeps all three is not noticed; every ordinary write changes the mtime)
    stat = path.stat()
    with open(path, "r+") as handle:
        handle.write(refund(2, "first"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sha256_cached(con, path) == sha != sha256_of(path)


def test_changed_mtime_or_size_is_rehashed(tmp_path, con):
    path = drop(tmp_path / "a.ndjson", refund(1, "first"), age_hours=5)
    first = sha256_cached(con, path)
    drop(path, refund(1, "other"), age_hours=4)  # same size, another mtime
    assert sha256_cached(con, path) == sha256_of(path) != first
    drop(path, refund(1, "longer note"), age_hours=4)  # another size
    assert sha256_cached(con, path) == sha256_of(path)
    assert cached(con, path)[2] == sha256_of(path)


def test_recently_modified_file_is_not_cached(tmp_path, con):
    path = tmp_path / "fresh.ndjson"
    path.write_text(refund(1, "just written"))
    assert sha256_cached(con, path) == sha256_of(path)
    assert cached(con, path) is None  # racily clean: hashed again next time


def test_ensure_table_is_idempotent(con):
    ensure_table(con)
    ensure_table(con)
    assert con.execute("select count(*) from meta.file_hashes").fetchone()[0] == 0


def test_modified_file_with_the_same_name_is_rehashed_and_landed(tmp_path, con):
    landing = tmp_path / "landing"
    path = drop(landing / "shopify" / "refunds.ndjson", refund(1, "first"), age_hours=5)
    assert land_files(con, landing)["shopify_refunds"].rows == 1
    drop(path, refund(2, "again"), age_hours=4)  # new content, same name and size
    result = land_files(con, landing)["shopify_refunds"]
    assert (result.files_landed, result.rows) == (1, 1)
    assert result.landed_sha256 == [sha256_of(path)]
    ids = con.execute("select id from raw.shopify_refunds order by id").fetchall()
    assert ids == [(1,), (2,)]


def test_touched_identical_file_is_skipped(tmp_path, con):
    landing = tmp_path / "landing"
    path = drop(landing / "shopify" / "refunds.ndjson", refund(1, "first"), age_hours=5)
    land_files(con, landing)
    os.utime(path, ns=(time.time_ns() - HOUR_NS, time.time_ns() - HOUR_NS))  # touched
    result = land_files(con, landing)["shopify_refunds"]
    assert (result.files_landed, result.files_skipped, result.rows) == (0, 1, 0)
    assert cached(con, path)[1] == path.stat().st_mtime_ns  # re-hashed with its new mtime
    assert con.execute("select count(*) from raw.shopify_refunds").fetchone()[0] == 1
    # an identical copy under another name is skipped by its content hash too
    drop(landing / "shopify" / "copy.ndjson", path.read_text(), age_hours=3)
    assert land_files(con, landing)["shopify_refunds"].files_skipped == 2
    assert con.execute("select count(*) from raw.shopify_refunds").fetchone()[0] == 1


def test_first_call_inside_a_transaction(tmp_path, con):
    from pipelines.lib.warehouse import transaction

    paths = [drop(tmp_path / f"{i}.ndjson", refund(i, "x"), age_hours=5) for i in range(3)]
    with transaction(con):
        shas = [sha256_cached(con, p) for p in paths]
    assert shas == [sha256_of(p) for p in paths]
    assert con.execute("select count(*) from meta.file_hashes").fetchone()[0] == 3
