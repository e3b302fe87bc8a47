"""Embedded mode: Kafka records read from `<landing>/cdc/*.ndjson` (DESIGN §2.1, §2.9).

One Kafka record per line: `{"topic", "partition", "offset", "key", "value"}`. `key` is the JSON
key object; `value` is the envelope object, null (a tombstone), or a JSON string holding raw bytes
that are not valid JSON (a malformed Kafka value). Each line becomes a Kafka record and goes
through `land.land_batch` (ledger source `file`), so decoding, dead letters and idempotency are
exactly those of Kafka.

A line that is not JSON or has no valid position is a dead letter (source `cdc`, position
`<sha256 of the file>:<line number>`). A file is recorded in `meta.files_landed` (source `cdc`)
in the transaction of its last batch, and skipped when its sha256 is already there (the hash
is cached by path, size, mtime and inode: `filehash.sha256_cached`).

Nothing in `cdc/` stops a run (DESIGN §12): a directory, FIFO, socket or device named `*.ndjson`
is not read, a symbolic link is not followed, and a file that cannot be read is left for the next
run; each is reported in `FilesSummary.files_ignored` with the reason. Encodings are those of the
NDJSON drops (`files.ndjson.ndjson_lines`): a UTF-8 BOM is stripped, a UTF-16 file with a BOM
is decoded, and a line that is not valid UTF-8 is the dead letter `invalid_encoding: …`.

Accounting: every line read is a blank line (whitespace only: no record), a landed row, a new
dead letter (a Kafka record that does not decode, or a line that is no Kafka record), or skipped
as a duplicate (a position already landed or dead-lettered, or repeated in the batch):
`FilesSummary.unaccounted` is always 0.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
from tqdm import tqdm

from pipelines.lib.cdc.land import (
    DEAD_LETTER_SOURCE,
    BatchResult,
    ParsedRecord,
    gc_paused,
    land_batch,
    load_connectors,
)
from pipelines.lib.filehash import sha256_cached
from pipelines.lib.files.ndjson import BOM_UTF8, LineTally, invalid_encoding, ndjson_lines, raw_line
from pipelines.lib.warehouse import (
    LANDING_MEMORY_LIMIT,
    DeadLetter,
    memory_limit,
    scalar,
    utcnow,
)

LEDGER_SOURCE = "file"  # meta.stream_offsets source of records read from files
FILES_SOURCE = "cdc"  # meta.files_landed source
CDC_DIR = "cdc"
PATTERN = "*.ndjson"
BATCH_SIZE = 20_000  # records per transaction (parsed envelopes are held in memory)
# Which decoder lands CDC files: `reference` (orjson and `decode.TableDecoder` per record; the
# default) or `columnar` (DuckDB's JSON reader, `columnar.py`). Both land identical rows, ledgers
# and dead letters (tests/cdc/test_columnar_diff.py). The default stays `reference` because the
# column-wise path is still slower: on the 100,000-return landscape (1.64 M records) it took
# 78 CPU-s against 43 (bench/RESULTS.md 2026-12-06 17:09, issue 23; bench/README.md says where).
# `parallel` runs the reference decoder's own code on chunks of the files in worker processes
# (`columnar_files.land_file_columnar` with a process pool; one worker per core): the same rows,
# ledgers and dead letters by construction, landed chunk by chunk and resumable like `columnar`.
DECODER_ENV = "RETURNSYNC_CDC_DECODER"
DECODERS = ("reference", "columnar", "parallel")


def decoder_setting(value: str | None = None) -> str:
    """The CDC file decoder: `value`, else $RETURNSYNC_CDC_DECODER, else `reference`."""
    from pipelines.errors import ConfigError

    choice = (value or os.environ.get(DECODER_ENV) or "reference").strip().lower()
    if choice not in DECODERS:
        raise ConfigError(f"{DECODER_ENV} must be one of {', '.join(DECODERS)}, got {choice!r}")
    return choice


@dataclass(frozen=True)
class IgnoredFile:
    """Something under `cdc/` that was not read, and why (looked at again on the next run)."""

    path: str  # relative to the landing directory
    reason: str


@dataclass
class FilesSummary:
    """What `land_cdc_files` / `replay_cdc_files` did.

    Line accounting (`land_cdc_files`): `lines_read` = `blank_lines` + rows landed + new dead
    letters + records skipped as duplicates (`unaccounted` is that difference: always 0). Lines
    of files skipped whole (already in the file ledger) are not read.
    """

    files_landed: list[str] = field(default_factory=list)  # paths relative to the landing dir
    files_skipped: list[str] = field(default_factory=list)  # already in the file ledger
    files_ignored: list[IgnoredFile] = field(default_factory=list)  # not regular, unreadable
    bad_lines: int = 0  # lines that were not a Kafka record (new dead letters included)
    lines_read: int = 0  # every line of the files read (blank ones included)
    blank_lines: int = 0  # whitespace only: no record, nothing lands
    columnar_rows: int = 0  # rows decoded column-wise in SQL (the rest by the reference)
    result: BatchResult = field(default_factory=BatchResult.empty)

    @property
    def landed(self) -> dict[str, int]:
        return self.result.landed

    @property
    def dead_letters(self) -> int:
        return self.result.dead_letters

    @property
    def duplicates(self) -> int:
        """Records skipped as duplicates (positions landed or dead-lettered before)."""
        return self.result.skipped

    @property
    def unaccounted(self) -> int:
        """Lines read that are neither blank, landed, dead-lettered nor duplicates: always 0."""
        landed = sum(self.result.landed.values())
        return self.lines_read - self.blank_lines - landed - self.dead_letters - self.duplicates

    @property
    def max_changed_at(self) -> datetime | None:
        return self.result.max_changed_at


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISLNK, "a symbolic link (not followed)"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _unreadable(exc: OSError) -> str:
    return f"unreadable: {exc.strerror or exc}"


def scan_cdc_dir(landing_dir: Path) -> tuple[list[Path], list[IgnoredFile]]:
    """The regular `cdc/*.ndjson` files of a landing directory in name order, and what was not
    taken with the reason: a directory, FIFO, socket or device named like one, a symbolic link
    (never followed: neither a linked file nor a linked `cdc/`)."""
    folder = Path(landing_dir) / CDC_DIR
    try:
        mode = folder.lstat().st_mode
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [IgnoredFile(CDC_DIR, _unreadable(exc))]
    if not stat.S_ISDIR(mode):
        return [], [IgnoredFile(CDC_DIR, f"not a directory: {_kind(mode)}")]
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if e.name.endswith(".ndjson")), key=lambda e: e.name)
    except OSError as exc:
        return [], [IgnoredFile(CDC_DIR, _unreadable(exc))]
    files: list[Path] = []
    ignored: list[IgnoredFile] = []
    for entry in entries:
        rel = f"{CDC_DIR}/{entry.name}"
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as exc:  # gone since the listing
            ignored.append(IgnoredFile(rel, _unreadable(exc)))
            continue
        if stat.S_ISREG(mode):
            files.append(Path(entry.path))
        else:
            ignored.append(IgnoredFile(rel, f"not read: {_kind(mode)}"))
    return files, ignored


def cdc_files(landing_dir: Path) -> list[Path]:
    """The CDC files of a landing directory, in name order: regular files only (`scan_cdc_dir`)."""
    return scan_cdc_dir(landing_dir)[0]


_MAX_PARTITION, _MAX_OFFSET = 2**31 - 1, 2**63 - 1


def parse_line(
    line: bytes, sha256: str, number: int, encoding: str = "UTF-8"
) -> ParsedRecord | DeadLetter:
    """One NDJSON line -> a Kafka record, or a `DeadLetter` naming what is wrong with it.

    The record keeps the line's parsed key and value (`land.ParsedRecord`, landed exactly like
    the `KafkaRecord` of their bytes: `.to_kafka()`), so nothing is parsed twice. A UTF-8 BOM in
    front of the line is ignored; a line that is not valid UTF-8 is `invalid_encoding` (these
    checks run only on a line orjson refused: nothing is added to a good line's cost).
    """

    def dead(reason: str) -> DeadLetter:
        return DeadLetter(DEAD_LETTER_SOURCE, f"{sha256}:{number}", raw_line(line), reason)

    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode()
        except UnicodeDecodeError as bad:
            return dead(invalid_encoding(line, bad, encoding))
        if not line.startswith(BOM_UTF8):
            return dead(f"line: bad JSON ({exc})")
        try:  # one BOM, as files joined from several exports have
            obj = orjson.loads(line[len(BOM_UTF8) :])
        except orjson.JSONDecodeError as again:
            return dead(f"line: bad JSON ({again})")
    if type(obj) is not dict:
        return dead("line: expected a JSON object {topic, partition, offset, key, value}")
    topic, partition, offset = obj.get("topic"), obj.get("partition"), obj.get("offset")
    if type(topic) is not str or not topic:
        return dead(
            "topic: missing" if topic is None else f"topic: expected a string, got {topic!r}"
        )
    for name, v, top in (("partition", partition, _MAX_PARTITION), ("offset", offset, _MAX_OFFSET)):
        if v is None:
            return dead(f"{name}: missing")
        if type(v) is not int or v < 0:
            return dead(f"{name}: expected a non-negative integer, got {v!r}")
        if v > top:
            return dead(f"{name}: out of range: {v}")
    return ParsedRecord(topic, partition, offset, obj.get("key"), obj.get("value"))


def _read(
    path: Path,
    sha256: str,
    bar: tqdm | None,
    needle: bytes | None = None,
    tally: LineTally | None = None,
) -> Iterator[tuple[int, ParsedRecord | DeadLetter | None]]:
    """(line number, record or dead letter) of each line; None for a blank line. With `needle`,
    lines that do not contain those bytes are passed over unparsed (a replay looking for one
    topic), and blank lines are not yielded."""
    tally = LineTally() if tally is None else tally
    with open(path, "rb") as fh:
        for number, line in enumerate(ndjson_lines(fh, tally), start=1):
            if bar is not None:
                bar.update(len(line))
            if needle is not None and needle not in line:
                continue
            if not line.strip():
                if needle is None:
                    yield number, None
                continue
            yield number, parse_line(line, sha256, number, tally.encoding)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _progress(paths: list[Path], progress: bool, desc: str) -> tqdm:
    total = sum(_size(p) for p in paths)
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=desc,
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )


def land_cdc_files(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    progress: bool = True,
    *,
    connectors: Mapping[str, dict] | None = None,
    batch_size: int = BATCH_SIZE,
    decoder: str | None = None,
    chunk_bytes: int | None = None,
) -> FilesSummary:
    """Land every new `<landing>/cdc/*.ndjson` file (by sha256), in batches of `batch_size`
    records (reference decoder) or chunks of `chunk_bytes` (columnar decoder, `decoder_setting`).

    `connectors` defaults to `<landing>/cdc/connectors.json`. Progress (bytes read) on stderr.
    """
    landing_dir = Path(landing_dir)
    decoder = decoder_setting(decoder)
    if connectors is None:
        connectors = load_connectors(landing_dir)
    summary = FilesSummary()
    paths, summary.files_ignored = scan_cdc_dir(landing_dir)
    with (
        _progress(paths, progress, "cdc files") as bar,
        gc_paused(),
        memory_limit(con, LANDING_MEMORY_LIMIT),
        _workers(decoder, paths) as pool,
    ):
        for path in paths:
            rel = path.relative_to(landing_dir).as_posix()
            try:
                if decoder in ("columnar", "parallel"):
                    from pipelines.lib.cdc.columnar_files import land_file_columnar

                    land_file_columnar(
                        con, path, rel, connectors, bar, summary, chunk_bytes, pool=pool
                    )
                else:
                    _land_file(con, path, rel, connectors, batch_size, bar, summary)
            except OSError as exc:  # unreadable, or gone: what landed stays, the rest next run
                summary.files_ignored.append(IgnoredFile(rel, _unreadable(exc)))
    return summary


PARALLEL_MIN_BYTES = 32 << 20  # less than this to read: no worker processes (starting them costs)


@contextmanager
def _workers(decoder: str, paths: list[Path]) -> Iterator[Any]:
    """The worker processes of `decoder="parallel"` (one per core), or None: another decoder, or
    "inline" with less than PARALLEL_MIN_BYTES to read (the chunks are then decoded in this
    process, by the same reference code). Forked, as the Kafka prefetch children are (`spawn`
    would import the caller's main module again): a worker only decodes, it never touches the
    warehouse connection it inherits."""
    if decoder != "parallel" or sum(_size(p) for p in paths) < PARALLEL_MIN_BYTES:
        yield "inline" if decoder == "parallel" else None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(len(os.sched_getaffinity(0)), 4))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


def _land_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    rel: str,
    connectors: Mapping[str, dict],
    batch_size: int,
    bar: tqdm,
    summary: FilesSummary,
) -> None:
    """Land one CDC file in batches; `summary` takes each batch as it commits, so a read error
    midway leaves it true of what landed."""
    sha = sha256_cached(con, path)  # re-read only if size, mtime or inode changed
    done = scalar(con, "select count(*) from meta.files_landed where sha256 = ?", [sha])
    if done:
        bar.update(_size(path))
        summary.files_skipped.append(rel)
        return
    file_result = BatchResult.empty()
    records: list[ParsedRecord] = []
    letters: list[DeadLetter] = []
    blank = lines = 0  # of the batch being read

    def flush(last: bool) -> None:
        nonlocal file_result, records, letters, blank, lines

        def ledger(c: duckdb.DuckDBPyConnection, batch: BatchResult) -> None:
            if last:
                total = file_result.merge(batch)
                c.execute(
                    "insert or ignore into meta.files_landed values (?, ?, ?, ?, ?, ?)",
                    [
                        sha,
                        FILES_SOURCE,
                        rel,
                        sum(total.landed.values()),
                        total.dead_letters,
                        utcnow(),
                    ],
                )

        batch = land_batch(
            con,
            records,
            source=LEDGER_SOURCE,
            connectors=connectors,
            extra_dead_letters=letters,
            in_transaction=ledger,
        )
        file_result = file_result.merge(batch)
        summary.result = summary.result.merge(batch)
        summary.bad_lines += len(letters)
        summary.lines_read += lines
        summary.blank_lines += blank
        records, letters = [], []
        blank = lines = 0

    # `_read` + `parse_line` inline (the hot loop of landing a file): a line that parses to an
    # object with a valid position is a record at once; any other line (blank, bad JSON, a BOM,
    # a bad position) is decided by `parse_line` itself.
    tally = LineTally()
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    # new(record, (...)) is ParsedRecord(...) without the named tuple's Python-level __new__
    new, record = tuple.__new__, ParsedRecord
    append = records.append
    with open(path, "rb") as fh:
        read = 0  # bytes of the file read, for the progress bar
        for number, line in enumerate(ndjson_lines(fh, tally), start=1):
            lines += 1
            try:
                obj = loads(line)
            except decode_error:
                obj = None
            if type(obj) is dict:
                get = obj.get
                topic, partition, offset = get("topic"), get("partition"), get("offset")
                if (
                    type(topic) is str
                    and topic
                    and type(partition) is int
                    and 0 <= partition <= _MAX_PARTITION
                    and type(offset) is int
                    and 0 <= offset <= _MAX_OFFSET
                ):
                    append(new(record, (topic, partition, offset, get("key"), get("value"))))
                    if len(records) + len(letters) >= batch_size:
                        bar.update(fh.tell() - read)
                        read = fh.tell()
                        flush(last=False)
                        append = records.append
                    continue
            if not line.strip():
                blank += 1
                continue
            item = parse_line(line, sha, number, tally.encoding)
            if type(item) is ParsedRecord:
                append(item)
            else:
                letters.append(item)
            if len(records) + len(letters) >= batch_size:
                bar.update(fh.tell() - read)
                read = fh.tell()
                flush(last=False)
                append = records.append
        bar.update(fh.tell() - read)
    flush(last=True)
    summary.files_landed.append(rel)


def replay_cdc_files(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    *,
    topic: str,
    partition: int | None = None,
    from_offset: int | None = None,
    from_timestamp_ms: int | None = None,
    retry_dead_letters: bool = True,
    progress: bool = True,
    connectors: Mapping[str, dict] | None = None,
    batch_size: int = BATCH_SIZE,
) -> FilesSummary:
    """Re-ingest a topic's records from the CDC files, from a position, ignoring the file ledger.

    The position is `from_offset` (per partition: offsets >= it), or `from_timestamp_ms`: as
    Kafka's offsets-for-times, per partition the first offset whose change event's `ts_ms` is at
    or after the time, and every record from there on. Only positions not landed yet land; with
    `retry_dead_letters` (the default) former dead letters are decoded again, and those that
    decode now land (see `land.land_batch`). Lines that are not Kafka records are not replayed.
    """
    if (from_offset is None) == (from_timestamp_ms is None):
        raise ValueError("give exactly one of from_offset and from_timestamp_ms")
    landing_dir = Path(landing_dir)
    if connectors is None:
        connectors = load_connectors(landing_dir)
    paths = cdc_files(landing_dir)

    # Topic names are plain ASCII ([a-zA-Z0-9._-]), which JSON never escapes: a line without the
    # name cannot hold a record of the topic, so it is not parsed at all.
    needle = topic.encode() if re.fullmatch(r"[A-Za-z0-9._-]+", topic) else None

    def wanted(rec: ParsedRecord) -> bool:
        return rec.topic == topic and (partition is None or rec.partition == partition)

    start: dict[int, int] = {}
    if from_timestamp_ms is not None:
        with _progress(paths, progress, "finding start offsets") as bar:
            for path in paths:
                for _, rec in _read(path, "", bar, needle):
                    if isinstance(rec, ParsedRecord) and wanted(rec):
                        ts = _event_ts_ms(rec.value)
                        if ts is not None and ts >= from_timestamp_ms:
                            prev = start.get(rec.partition)
                            start[rec.partition] = (
                                rec.offset if prev is None else min(prev, rec.offset)
                            )

    def selected(rec: ParsedRecord) -> bool:
        if not wanted(rec):
            return False
        if from_offset is not None:
            return rec.offset >= from_offset
        first = start.get(rec.partition)
        return first is not None and rec.offset >= first

    summary = FilesSummary()
    records: list[ParsedRecord] = []
    with _progress(paths, progress, f"replaying {topic}") as bar, gc_paused():
        for path in paths:
            for _, rec in _read(path, "", bar, needle):
                if isinstance(rec, ParsedRecord) and selected(rec):
                    records.append(rec)
                    if len(records) >= batch_size:
                        summary.result = summary.result.merge(
                            land_batch(
                                con,
                                records,
                                source=LEDGER_SOURCE,
                                connectors=connectors,
                                retry_dead_letters=retry_dead_letters,
                            )
                        )
                        records = []
            summary.files_landed.append(path.relative_to(landing_dir).as_posix())
    if records:
        summary.result = summary.result.merge(
            land_batch(
                con,
                records,
                source=LEDGER_SOURCE,
                connectors=connectors,
                retry_dead_letters=retry_dead_letters,
            )
        )
    return summary


def _event_ts_ms(value: Any) -> int | None:
    """The change event's time (envelope `ts_ms`, else `source.ts_ms`) for offsets-for-times."""
    obj = value
    if type(obj) is str:
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError:
            return None
    if type(obj) is dict and "payload" in obj and len(obj) == 2:
        obj = obj["payload"]
    if type(obj) is not dict:
        return None
    ts = obj.get("ts_ms")
    if type(ts) is not int:
        source = obj.get("source")
        ts = source.get("ts_ms") if type(source) is dict else None
    return ts if type(ts) is int else None
