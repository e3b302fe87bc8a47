"""Land file drops into `raw` with the file ledger of DESIGN §3.

- A file is identified by the sha256 of its bytes. A file already in `meta.files_landed` is
  skipped, so re-dropping (even under another name) changes nothing. The hash is cached by
  (path, size, mtime_ns, inode) in `meta.file_hashes` (`pipelines.lib.filehash`), so a run reads
  only the files that are new or changed.
- Reference files (`reference/*.csv`) are versioned by arrival instead (DESIGN §12,
  `pipelines.lib.files.reference`): a content that differs from the current version's becomes
  current, even one landed before (its rows are not landed again).
- Every landed row keeps `_file` (path relative to the landing directory), `_file_sha256` and
  `_row_number`; the rows, their dead letters and the `meta.files_landed` row are written in ONE
  DuckDB transaction, so a crash leaves either the whole file or nothing. The file is read and
  inserted in Arrow batches (`batch_rows` rows or `batch_bytes` bytes of input, whichever comes
  first), so memory does not grow with the file: DuckDB writes a large transaction's row groups
  to the database file as they fill (measured: peak RSS is the same with a commit per batch).
- Every line of a file is accounted for: `meta.file_lines` has its lines read and the
  lines that hold no record (header, blank lines); lines read = those + rows landed + dead
  letters of its `meta.files_landed` row. A duplicate file's lines are skipped whole.
- A file whose header (or, for Amazon, whose name) does not match its contract is moved whole to
  `<landing>/_quarantine/<source>/` (outside every source's glob, so it is never read again) and
  recorded in `meta.quarantine` with the reason; the other files still land.
- Nothing in a drop folder can stop a run (DESIGN §12): symbolic links are not followed (neither
  a linked file nor a linked source folder), and a directory, FIFO, socket or device named like a
  data file, or a file that cannot be read, is skipped and reported (`FileLandingSummary.skipped`)
  with the reason. Hidden files (partial uploads, e.g. `.part`) are ignored silently.
"""

from __future__ import annotations

import fnmatch
import gc
import os
import shutil
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lib.contracts import FILE_SOURCES, FileSource
from pipelines.lib.filehash import sha256_cached, sha256_of
from pipelines.lib.files import columnar
from pipelines.lib.files.delimited import (
    ContractViolation,
    LineCounts,
    land_delimited,
    read_header,
)
from pipelines.lib.files.ndjson import LineTally, land_ndjson
from pipelines.lib.files.reference import (
    ReferenceVersion,
    current_versions,
    is_versioned,
    record_version,
)
from pipelines.lib.warehouse import (
    LANDING_MEMORY_LIMIT,
    DeadLetter,
    table_exists,
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
# How NDJSON drops are converted: "columnar" (files/columnar.py: one typed json_transform per
# batch, the per-line reference for the lines it is not certain of) or "reference" (per line:
# fastrow's builder, then RowConverter). Both land the same rows, ledgers and dead letters
# (tests/files/test_columnar_files_diff.py, tests/fuzz/test_fuzz_columnar_drops.py). CSV/TSV
# drops: "columnar" splits the lines whose fields are certain in DuckDB and leaves the rest to
# the csv module (delimited._read_columnar), "reference" reads every line with the csv module;
# both type each batch with the same SQL (tests/files/test_columnar_delimited_diff.py,
# tests/files/test_fuzz_columnar_delimited.py). The default is "columnar" because it was
# measured faster: a 20,000-return landscape's drops 2.92 CPU-s against 3.08 (best wall 7.9 s
# against 8.5 s, load1 10), the webhooks alone 1.17 CPU-s against 1.53 (bench/ingest_files.py
# --drops, bench/RESULTS.md `file_drops_decoders`, 2026-12-06).
DECODER_ENV = "RETURNSYNC_FILES_DECODER"
DECODERS = ("reference", "columnar")
DEFAULT_DECODER = "columnar"


def decoder_setting(value: str | None = None) -> str:
    """The file drop decoder: `value`, else $RETURNSYNC_FILES_DECODER, else `columnar`."""
    from pipelines.errors import ConfigError

    choice = (value or os.environ.get(DECODER_ENV) or DEFAULT_DECODER).strip().lower()
    if choice not in DECODERS:
        raise ConfigError(f"{DECODER_ENV} must be one of {', '.join(DECODERS)}, got {choice!r}")
    return choice


@dataclass(frozen=True)
class QuarantinedFile:
    path: str  # where it was dropped, relative to the landing directory
    quarantined_path: str  # where it is now, relative to the landing directory
    reason: str
    sha256: str


@dataclass(frozen=True)
class SkippedPath:
    """Something in a drop folder that was not read, and why (it is looked at again next run)."""

    path: str  # relative to the landing directory
    reason: str


@dataclass
class FileLandingSummary:
    """What one `land_files` call did for one raw table."""

    source: str  # ledger / dead-letter source name (FileSource.source)
    raw_table: str
    files_landed: int = 0
    files_skipped: int = 0  # already landed (or, for a reference file, already current)
    rows: int = 0
    dead_letters: int = 0
    quarantined: list[QuarantinedFile] = field(default_factory=list)
    landed_sha256: list[str] = field(default_factory=list)  # the batch GE validates
    # the `_ingested_at` stamped on every row landed by this call (None: nothing landed):
    # GE reads its batch from the row groups stamped since, not the whole raw table
    ingested_at: datetime | None = None
    skipped: list[SkippedPath] = field(default_factory=list)  # not regular files, unreadable
    # line accounting of the files landed:
    # lines_read = lines_ignored (headers, blank lines) + their rows + their dead letters
    lines_read: int = 0
    lines_ignored: int = 0
    duplicate_lines: int = 0  # lines of the files skipped as already landed (when recorded)
    versions: list[ReferenceVersion] = field(default_factory=list)  # reference files applied
    columnar_rows: int = 0  # rows converted in SQL by the column-wise decoder

    @property
    def quarantined_files(self) -> int:
        return len(self.quarantined)


def warm_up(validation: bool = True) -> None:
    """Pay once, now, what the first landing of a process pays (a long-lived process calls
    this before it waits: `returnsync watch`): the readers' generated converters and SQL for
    every file source, and with `validation` Great Expectations (its import alone is ~3 CPU-s,
    measured 2026-12-06: most of what the first increment's webhooks step took) and its suites.
    """
    from pipelines.lib.files.fastrow import compile_builder
    from pipelines.lib.files.ndjson import RowConverter

    for fs in FILE_SOURCES:
        if fs.format != "ndjson":
            continue
        RowConverter(fs)
        compile_builder(fs)
        compile_builder(fs, exact_numbers=True)
        if columnar.supported(fs):
            columnar.warm_up(fs)
    if validation:
        from expectations import warm_up as prepare_suites

        prepare_suites()


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


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _unreadable(exc: OSError) -> str:
    return f"unreadable: {exc.strerror or exc}"


def scan_source(landing_dir: Path, fs: FileSource) -> tuple[list[Path], list[SkippedPath]]:
    """The regular files of one source, in name order (Amazon reports: date order), and what was
    skipped with the reason. Symbolic links are not followed; hidden files are ignored."""
    landing = Path(landing_dir)
    folder, _, name_glob = fs.pattern.rpartition("/")
    directory = landing / folder if folder else landing
    try:
        mode = directory.lstat().st_mode
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [SkippedPath(folder, _unreadable(exc))]
    if stat.S_ISLNK(mode):
        return [], [SkippedPath(folder, "symbolic link: not followed")]
    if not stat.S_ISDIR(mode):
        return [], [SkippedPath(folder, "not a directory")]
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        return [], [SkippedPath(folder, _unreadable(exc))]
    files: list[Path] = []
    skipped: list[SkippedPath] = []
    for entry in entries:
        if entry.name.startswith(".") or not fnmatch.fnmatchcase(entry.name, name_glob):
            continue
        rel = f"{folder}/{entry.name}" if folder else entry.name
        try:
            if entry.is_symlink():
                skipped.append(SkippedPath(rel, "symbolic link: not followed"))
            elif entry.is_file(follow_symlinks=False):
                files.append(Path(entry.path))
            else:
                kind = _kind(entry.stat(follow_symlinks=False).st_mode)
                skipped.append(SkippedPath(rel, f"not a regular file ({kind})"))
        except OSError as exc:
            skipped.append(SkippedPath(rel, _unreadable(exc)))
    return files, skipped


def source_files(landing_dir: Path, fs: FileSource) -> list[Path]:
    """The regular files of one source, in name order (see `scan_source`)."""
    return scan_source(landing_dir, fs)[0]


def landed_hashes(con: duckdb.DuckDBPyConnection | None) -> set[str]:
    if con is None:
        return set()
    return {row[0] for row in con.execute("select sha256 from meta.files_landed").fetchall()}


@dataclass
class _ReferenceState:
    current: dict[str, str] = field(default_factory=dict)  # raw_table -> current version's sha
    known: set[tuple[str, str]] = field(default_factory=set)  # (raw_table, sha) ever a version


def _reference_state(con: duckdb.DuckDBPyConnection | None) -> _ReferenceState:
    state = _ReferenceState()
    if con is None or not table_exists(con, "meta", "reference_versions"):
        return state
    state.current = {table: v.sha256 for table, v in current_versions(con).items()}
    state.known = set(
        con.execute("select raw_table, sha256 from meta.reference_versions").fetchall()
    )
    return state


def _is_done(fs: FileSource, sha: str, done: set[str], refs: _ReferenceState) -> bool:
    """Nothing to do for this content: landed before; for a reference file, it is the current
    version (or it landed as another source's file, which it cannot become a version of)."""
    if is_versioned(fs) and (fs.raw_table, sha) in refs.known:
        return refs.current.get(fs.raw_table) == sha
    return sha in done


def pending_files(
    landing_dir: Path | str,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    hash_cache: dict[str, list] | None = None,
) -> list[tuple[str, Path, str]]:
    """Files waiting to land: `(source, path, sha256)` for every file under the landing directory
    whose content is not in `meta.files_landed` (all of them when `con` is None); a reference
    file is waiting when its content is not the current version's.

    `hash_cache` (relative path -> [size, mtime_ns, sha256]), if given, saves re-hashing files
    that did not change since the last call; it is updated in place to the files present now.
    Files that cannot be read are left out (`land_files` reports them).
    """
    landing = Path(landing_dir)
    done = landed_hashes(con)
    refs = _reference_state(con)
    found: list[tuple[str, Path, str]] = []
    seen: set[Path] = set()
    fresh: dict[str, list] = {}
    for fs in FILE_SOURCES:
        for path in source_files(landing, fs):
            if path in seen:
                continue
            seen.add(path)
            rel = path.relative_to(landing).as_posix()
            try:
                st = path.stat()
                cached = (hash_cache or {}).get(rel)
                if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
                    sha = cached[2]
                else:
                    sha = sha256_of(path)
            except OSError:
                continue
            fresh[rel] = [st.st_size, st.st_mtime_ns, sha]
            if not _is_done(fs, sha, done, refs):
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
    decoder: str | None = None,
) -> dict[str, FileLandingSummary]:
    """Land every new file of the chosen sources; returns a summary per raw table.

    `sources` are ledger source names (`returns_saas`, `shopify`, `amazon`, `b2b`, `reference`)
    or raw table names; default: all. While landing, DuckDB's `memory_limit` is lowered to
    `memory_limit` (restored afterwards; None leaves it alone) so ingestion memory stays bounded
    (DuckDB's buffer pool fills up to it; what does not fit is written out or spilled).

    `fast_path=False` converts every NDJSON line with the reference converter (the generated
    fast builder is otherwise tried first; both give the same rows and dead letters).
    `decoder="columnar"` converts NDJSON drops column-wise (`files/columnar.py`) and splits
    CSV/TSV lines in DuckDB (`delimited._read_columnar`), the same rows, ledger and dead letters
    as `"reference"`; None reads $RETURNSYNC_FILES_DECODER (default `columnar`; another value
    raises ConfigError).

    The result is keyed by raw table (`returns_saas_webhooks`, `shopify_refunds`,
    `amazon_returns`, `b2b_credit_requests`, `sku_crosswalk`, `warehouse_crosswalk`), because
    the two crosswalks share the ledger source `reference`.
    """
    decoder = decoder_setting(decoder)
    landing = Path(landing_dir)
    chosen = select_sources(sources)
    ingested_at = utcnow()
    summaries = {fs.raw_table: FileLandingSummary(fs.source, fs.raw_table) for fs in chosen}
    work: list[tuple[FileSource, Path]] = []
    for fs in chosen:
        files, skipped = scan_source(landing, fs)
        work += [(fs, path) for path in files]
        summaries[fs.raw_table].skipped += skipped
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), desc="landing files", unit="file", file=sys.stderr)
    done = landed_hashes(con)
    refs = _reference_state(con)
    collecting = gc.isenabled()
    try:
        with limited_memory(con, memory_limit):
            hashes: list[str | None] = []
            with transaction(con):  # one commit for the hash cache's new rows, not one per file
                for fs, path in work:
                    try:
                        hashes.append(sha256_cached(con, path))
                    except OSError as exc:  # unreadable, or gone since the listing
                        hashes.append(None)
                        rel = path.relative_to(landing).as_posix()
                        summaries[fs.raw_table].skipped.append(SkippedPath(rel, _unreadable(exc)))
            # The readers build millions of short-lived, acyclic containers (freed by reference
            # counting): the cyclic collector only re-walks them, ~8% of the CPU on a large file.
            gc.disable()
            for (fs, path), sha in zip(work, hashes, strict=True):
                if bar is not None:
                    bar.set_postfix_str(path.relative_to(landing).as_posix(), refresh=False)
                summary = summaries[fs.raw_table]
                if sha is None:
                    pass
                elif _is_done(fs, sha, done, refs):
                    summary.files_skipped += 1
                    summary.duplicate_lines += _lines_of(con, sha)
                else:
                    try:
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
                            landed_before=(fs.raw_table, sha) in refs.known,
                            decoder=decoder,
                        )
                    except OSError as exc:  # read failed midway: rolled back, tried next run
                        rel = path.relative_to(landing).as_posix()
                        summary.skipped.append(SkippedPath(rel, _unreadable(exc)))
                    else:
                        done.add(sha)
                        if is_versioned(fs):
                            refs.current[fs.raw_table] = sha
                            refs.known.add((fs.raw_table, sha))
                if bar is not None:
                    bar.update()
    finally:
        if collecting:
            gc.enable()
        if bar is not None:
            bar.close()
    return summaries


def _lines_of(con: duckdb.DuckDBPyConnection, sha: str) -> int:
    """The lines of a landed file (0 when not recorded: landed before lines were counted)."""
    row = con.execute("select lines_read from meta.file_lines where sha256 = ?", [sha]).fetchall()
    return row[0][0] if row else 0


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
    landed_before: bool = False,
    decoder: str = DEFAULT_DECODER,
) -> None:
    rel = path.relative_to(landing).as_posix()
    if landed_before:  # a reference file whose content landed before: only a new version
        with transaction(con):
            summary.versions.append(record_version(con, fs, sha, rel, ingested_at))
        return

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
            try:
                summary.quarantined.append(quarantine(con, fs, landing, path, sha, str(exc)))
            except OSError as move_error:
                reason = f"{exc}; could not move it to the quarantine: {_unreadable(move_error)}"
                summary.skipped.append(SkippedPath(rel, reason))
            return
    lines: LineCounts | None = None
    with transaction(con):
        if header is not None:
            lines = land_delimited(
                con,
                fs,
                path,
                header,
                rel,
                sha,
                ingested_at,
                bury,
                *batch,
                columnar=decoder == "columnar" and fast_path,
            )
            rows, dead = lines.rows, lines.dead_letters
            summary.columnar_rows += lines.columnar_rows
            con.execute(
                "insert or replace into meta.file_lines values (?, ?, ?)",
                [sha, lines.lines_read, lines.ignored],
            )
        else:

            def insert(_rs_rows: pa.Table) -> None:
                # a replacement scan of the local name, not `register` (see delimited.flush)
                con.execute(f"insert into raw.{fs.raw_table} by name select * from _rs_rows")

            tally = LineTally()
            if decoder == "columnar" and fast_path and columnar.supported(fs):
                rows, dead, in_sql = columnar.land_ndjson_columnar(
                    con, fs, path, rel, sha, ingested_at, insert, bury, *batch, counts=tally
                )
                summary.columnar_rows += in_sql
            else:
                rows, dead = land_ndjson(
                    con,
                    fs,
                    path,
                    rel,
                    sha,
                    ingested_at,
                    insert,
                    bury,
                    *batch,
                    fast=fast_path,
                    counts=tally,
                )
            # NDJSON: every line not blank is one row or one dead letter (ndjson.LineTally)
            lines = LineCounts(
                lines_read=tally.lines_read, blank=tally.blank_lines, rows=rows, dead_letters=dead
            )
            con.execute(
                "insert or replace into meta.file_lines values (?, ?, ?)",
                [sha, lines.lines_read, lines.ignored],
            )
        con.execute(
            "insert into meta.files_landed values (?, ?, ?, ?, ?, ?)",
            [sha, fs.source, rel, rows, dead, ingested_at],
        )
        if is_versioned(fs):
            summary.versions.append(record_version(con, fs, sha, rel, ingested_at))
    summary.files_landed += 1
    summary.rows += rows
    summary.dead_letters += dead
    summary.landed_sha256.append(sha)
    summary.ingested_at = ingested_at
    if lines is not None:
        summary.lines_read += lines.lines_read
        summary.lines_ignored += lines.ignored


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
