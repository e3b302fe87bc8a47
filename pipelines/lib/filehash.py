"""sha256 of landed files, cached by what the file system says about them.

The file ledgers (`meta.files_landed`) identify a file by the sha256 of its bytes, so every run
used to read every file under the landing directory again. `sha256_cached` keeps, per absolute
path, the file's size, mtime (ns) and inode with its sha256 in `meta.file_hashes`, and reads the
bytes again only when one of them changed.

The ledger semantics do not change: the sha256 returned is always the hash of the file's current
bytes, as far as (size, mtime_ns, inode) can tell. Like git's index, a file whose mtime is within
`RACY_NS` of the moment it was hashed is not cached ("racily clean"): a writer could still change
it within the same timestamp tick, keeping its size and mtime.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from pathlib import Path

import duckdb

from pipelines.lib.migrations import migrate

RACY_NS = 2_000_000_000  # a file modified this recently (vs. the hash time) is hashed every time

_ENSURED: weakref.WeakSet = weakref.WeakSet()  # connections known to have the table


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create `meta.file_hashes` if missing (idempotent)."""
    migrate(con)


def sha256_of(path: Path | str) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_cached(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """The sha256 of `path`, re-hashed only when its size, mtime_ns or inode changed.

    Creates `meta.file_hashes` on a connection's first call. Writes one row per (re-)hashed
    file (a caller's open transaction includes it: wrap many calls in one to commit once).
    """
    key = str(Path(path).absolute())
    stat = Path(path).stat()
    if con not in _ENSURED:  # `create table if not exists` costs ~0.6 ms: once per connection
        ensure_table(con)
        _ENSURED.add(con)
    try:
        row = con.execute(
            "select size, mtime_ns, inode, sha256 from meta.file_hashes where path = ?", [key]
        ).fetchall()
    except duckdb.CatalogException:  # created in a transaction that was rolled back
        _ENSURED.discard(con)
        raise
    row = row[0] if row else None
    if row is not None and row[:3] == (stat.st_size, stat.st_mtime_ns, stat.st_ino):
        return row[3]
    started_ns = time.time_ns()
    sha = sha256_of(path)
    after = Path(path).stat()
    unchanged = (after.st_size, after.st_mtime_ns, after.st_ino) == (
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ino,
    )
    if unchanged and stat.st_mtime_ns < started_ns - RACY_NS:
        con.execute(
            "insert or replace into meta.file_hashes values (?, ?, ?, ?, ?, current_timestamp)",
            [key, stat.st_size, stat.st_mtime_ns, stat.st_ino, sha],
        )
    elif row is not None:
        con.execute("delete from meta.file_hashes where path = ?", [key])
    return sha
