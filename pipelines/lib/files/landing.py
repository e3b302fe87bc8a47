"""Land file drops into `raw` with the file ledger of DESIGN §3.

- A file is identified by the sha256 of its bytes. A file already in `meta.files_landed` is
  skipped, so re-dropping (even under another name) changes nothing. The hash is cached by
  (path, size, mtime_ns, inode) in `meta.file_hashes` (`pipelines.lib.filehash`), so a run reads
  only the files that are new or changed.
- Every landed row keeps `_file` (path relative to the landing directory), `_file_sha256` and
  `_row_number`; the rows, their dead letters and the `meta.files_landed` row are written in ONE
  DuckDB transaction, so a crash leaves either the whole file or nothing. The file is read and
  inserted in Arrow batches (`batch_rows` rows or `batch_bytes` bytes of input, whichever comes
  first), so memory does not grow with the file: DuckDB writes a large transaction's row groups
  to the database file as they fill (measured: peak RSS is the same with a commit per batch).
- A file whose header (or, for Amazon, whose name) does not match its contract is moved whole to
  `<landing>/_quarantine/<source>/` (outside every source's glob, so it is never read again) and
  recorded in `meta.quarantine` with the reason; the other files still land.
"""

from __future__ import annotations

import gc
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lib.contracts import FILE_SOURCES, FileSource
from pipelines.lib.filehash import sha256_cached, sha256_of
from pipelines.lib.files.delimited import ContractViolation, land_delimited, read_header
from pipelines.lib.files.ndjson import land_ndjson
from pipelines.lib.warehouse import (
    LANDING_MEMORY_LIMIT,
    DeadLetter,
    transaction,
    utcnow,
    write_dead_letters,
)
from pipelines.lib.warehouse import memory_limit as limited_memory

QUARANTINE_DIR = "_quarantine"
# DuckDB's share while landing (goal: ingestion within 512 MB; its buffer pool fills up to it:
# 256 MB cost ~60 MB more RSS, no less CPU)
MEMORY_LIMIT = LANDING_MEMORY_LIMIT
BATCH_ROWS = 20_000  # rows per Arrow batch: bounds memory (DuckDB reads each batch once)
BATCH_BYTES = 4 << 20  # ...or this much input per batch, whichever comes first (a 4 MB batch of
#                        webhooks is ~5,000 rows and ~40 MB of Python objects)


@dataclass(frozen=True)
class QuarantinedFile:
    path: str  # where it was dropped, relative to the landing directory
    quarantined_path: str  # where it is now, relative to the landing directory
    reason: str
    sha256: str


@dataclass
class FileLandingSummary:
    """What one `land_files` call did for one raw table."""

    source: str  # ledger / dead-letter source name (FileSource.source)
    raw_table: str
    files_landed: int = 0
    files_skipped: int = 0
    rows: int = 0
    dead_letters: int = 0
    quarantined: list[QuarantinedFile] = field(default_factory=list)
    landed_sha256: list[str] = field(default_factory=list)  # the batch GE validates

    @property
    def quarantined_files(self) -> int:
        return len(self.quarantined)


def select_sources(sources: Iterable[str] | None = None) -> list[FileSource]:
    """FileSources by ledger source name (`reference` gives both crosswalks) or raw table name."""
    if sources is None:
        return list(FILE_SOURCES)
    wanted = set(sources)
    chosen = [fs for fs in FILE_SOURCES if fs.source in wanted or fs.raw_table in wanted]
    unknown = wanted - {fs.source for fs in chosen} - {fs.raw_table for fs in chosen}
    if unknown:
        known = sorted({fs.source for fs in FILE_SOURCES} | {fs.raw_table for fs in FILE_SOURCES})
        raise ValueError(f"unknown file source(s) {sorted(unknown)}; known: {known}")
    return chosen


def source_files(landing_dir: Path, fs: FileSource) -> list[Path]:
    """The files of one source, in name order (Amazon reports: date order). Hidden files (partial
    uploads, e.g. `.part`) are ignored."""
    return sorted(
        p for p in Path(landing_dir).glob(fs.pattern) if p.is_file() and not p.name.startswith(".")
    )


def landed_hashes(con: duckdb.DuckDBPyConnection | None) -> set[str]:
    if con is None:
        return set()
    return {row[0] for row in con.execute("select sha256 from meta.files_landed").fetchall()}


def pending_files(
    landing_dir: Path | str,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    hash_cache: dict[str, list] | None = None,
) -> list[tuple[str, Path, str]]:
    """Files waiting to land: `(source, path, sha256)` for every file under the landing directory
    whose content is not in `meta.files_landed` (all of them when `con` is None).

    `hash_cache` (relative path -> [size, mtime_ns, sha256]), if given, saves re-hashing files
    that did not change since the last call; it is updated in place to the files present now.
    """
    landing = Path(landing_dir)
    done = landed_hashes(con)
    found: list[tuple[str, Path, str]] = []
    seen: set[Path] = set()
    fresh: dict[str, list] = {}
    for fs in FILE_SOURCES:
        for path in source_files(landing, fs):
            if path in seen:
                continue
            seen.add(path)
            rel = path.relative_to(landing).as_posix()
            stat = path.stat()
            cached = (hash_cache or {}).get(rel)
            if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
                sha = cached[2]
            else:
                sha = sha256_of(path)
            fresh[rel] = [stat.st_size, stat.st_mtime_ns, sha]
            if sha not in done:
                found.append((fs.source, path, sha))
    if hash_cache is not None:
        hash_cache.clear()
        hash_cache.update(fresh)
    return found


def land_files(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path | str,
    *,
    sources: Iterable[str] | None = None,
    progress: bool = False,
    batch_rows: int = BATCH_ROWS,
    batch_bytes: int = BATCH_BYTES,
    memory_limit: str | None = MEMORY_LIMIT,
    fast_path: bool = True,
) -> dict[str, FileLandingSummary]:
    """Land every new file of the chosen sources; returns a summary per raw table.

    `sources` are ledger source names (`returns_saas`, `shopify`, `amazon`, `b2b`, `reference`)
    or raw table names; default: all. While landing, DuckDB's `memory_limit` is lowered to
    `memory_limit` (restored afterwards; None leaves it alone) so ingestion memory stays bounded
    (DuckDB's buffer pool fills up to it; what does not fit is written out or spilled).

    `fast_path=False` converts every NDJSON line with the reference converter (the generated
    fast builder is otherwise tried first; both give the same rows and dead letters).

    The result is keyed by raw table (`returns_saas_webhooks`, `shopify_refunds`,
    `amazon_returns`, `b2b_credit_requests`, `sku_crosswalk`, `warehouse_crosswalk`), because
    the two crosswalks share the ledger source `reference`.
    """
    landing = Path(landing_dir)
    chosen = select_sources(sources)
    ingested_at = utcnow()
    summaries = {fs.raw_table: FileLandingSummary(fs.source, fs.raw_table) for fs in chosen}
    work = [(fs, path) for fs in chosen for path in source_files(landing, fs)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), desc="landing files", unit="file", file=sys.stderr)
    done = landed_hashes(con)
    collecting = gc.isenabled()
    try:
        with limited_memory(con, memory_limit):
            with transaction(con):  # one commit for the hash cache's new rows, not one per file
                hashes = [sha256_cached(con, path) for _, path in work]
            # The readers build millions of short-lived, acyclic containers (freed by reference
            # counting): the cyclic collector only re-walks them, ~8% of the CPU on a large file.
            gc.disable()
            for (fs, path), sha in zip(work, hashes, strict=True):
                if bar is not None:
                    bar.set_postfix_str(path.relative_to(landing).as_posix(), refresh=False)
                summary = summaries[fs.raw_table]
                if sha in done:
                    summary.files_skipped += 1
                else:
                    _land_one(
                        con,
                        fs,
                        landing,
                        path,
                        sha,
                        ingested_at,
                        (batch_rows, batch_bytes),
                        summary,
                        fast_path,
                    )
                    done.add(sha)
                if bar is not None:
                    bar.update()
    finally:
        if collecting:
            gc.enable()
        if bar is not None:
            bar.close()
    return summaries


def _land_one(
    con: duckdb.DuckDBPyConnection,
    fs: FileSource,
    landing: Path,
    path: Path,
    sha: str,
    ingested_at: datetime,
    batch: tuple[int, int],
    summary: FileLandingSummary,
    fast_path: bool = True,
) -> None:
    rel = path.relative_to(landing).as_posix()

    def bury(letters: list[DeadLetter]) -> int:
        buried = write_dead_letters(con, letters)
        # write_dead_letters ends on `.fetchone()`, which leaves DuckDB's result open; DuckDB 2
        # then refuses `con.sql(...)` (the next CSV batch's typing query) until it is finished
        con.execute("select 1").fetchall()
        return buried

    header = None
    if path.suffix.lower() in (".csv", ".tsv"):
        try:
            header = read_header(fs, path)
        except ContractViolation as exc:
            summary.quarantined.append(quarantine(con, fs, landing, path, sha, str(exc)))
            return
    with transaction(con):
        if header is not None:
            rows, dead = land_delimited(con, fs, path, header, rel, sha, ingested_at, bury, *batch)
        else:

            def insert(_rs_rows: pa.Table) -> None:
                # a replacement scan of the local name, not `register` (see delimited.flush)
                con.execute(f"insert into raw.{fs.raw_table} by name select * from _rs_rows")

            rows, dead = land_ndjson(
                con, fs, path, rel, sha, ingested_at, insert, bury, *batch, fast=fast_path
            )
        con.execute(
            "insert into meta.files_landed values (?, ?, ?, ?, ?, ?)",
            [sha, fs.source, rel, rows, dead, ingested_at],
        )
    summary.files_landed += 1
    summary.rows += rows
    summary.dead_letters += dead
    summary.landed_sha256.append(sha)


def quarantine(
    con: duckdb.DuckDBPyConnection,
    fs: FileSource,
    landing: Path,
    path: Path,
    sha: str,
    reason: str,
) -> QuarantinedFile:
    """Move a file whose header breaks its contract to `<landing>/_quarantine/<source>/`."""
    rel = path.relative_to(landing).as_posix()
    target_dir = landing / QUARANTINE_DIR / fs.source
    target = target_dir / path.name
    if target.exists():
        target = target_dir / f"{sha[:12]}-{path.name}"
    moved = target.relative_to(landing).as_posix()
    with transaction(con):
        con.execute(
            "insert or ignore into meta.quarantine values (?, ?, ?, ?, ?, current_timestamp)",
            [sha, fs.source, rel, moved, reason],
        )
        target_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
    return QuarantinedFile(rel, moved, reason, sha)
