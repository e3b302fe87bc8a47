"""Land one CDC file column-wise, chunk by chunk, resumable (DESIGN §3; issue 23).

Each chunk of whole lines (`columnar.read_chunks`, at most `columnar.CHUNK_BYTES`) is decoded by
`columnar.ColumnarDecoder` and landed by `land.land_decoded` in one transaction, together with
the file's progress in `meta.cdc_file_progress` (sha256 -> byte offset and line number after the
last committed chunk, and the file's running totals). A run killed part-way through a file starts
again after its last committed chunk; the file counts as landed (`meta.files_landed`) only in the
transaction of its last chunk, which also removes its progress row.

The progress row is a cache, not history: without it a file is read from its start, and every
position already landed is skipped by the ledger (`land.land_decoded`), so the raw tables come out
the same. It is therefore kept outside the migrations (like `meta.file_hashes`).

Memory: one chunk of bytes, its Arrow line column (zero-copy) and its decoded rows are held at a
time; DuckDB's share is bounded by `warehouse.LANDING_MEMORY_LIMIT` (see `bench/memory_cdc.py`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
from tqdm import tqdm

from pipelines.lib.cdc.columnar import (
    CHUNK_BYTES,
    Chunk,
    ChunkDecoded,
    ColumnarDecoder,
    decode_chunk_reference,
    read_chunks,
)
from pipelines.lib.cdc.land import BatchResult, land_decoded
from pipelines.lib.filehash import sha256_cached
from pipelines.lib.files.ndjson import _WIDE_BOMS, BOM_UTF8
from pipelines.lib.stages import mark
from pipelines.lib.warehouse import scalar, utcnow

PROGRESS_DDL = """
create schema if not exists meta;
create table if not exists meta.cdc_file_progress (
    sha256       varchar     primary key,
    path         varchar     not null,
    next_byte    bigint      not null,   -- file offset after the last committed chunk
    next_line    bigint      not null,   -- number of the first line not landed yet
    rows_landed  bigint      not null,   -- of the file so far (for its meta.files_landed row)
    dead_letters bigint      not null,
    lines_read   bigint      not null,
    blank_lines  bigint      not null,
    updated_at   timestamptz not null
);
"""

_DECODERS: dict[int, ColumnarDecoder] = {}


def _decoder(con: duckdb.DuckDBPyConnection, connectors: Mapping[str, dict]) -> ColumnarDecoder:
    """One decoder per connection and connectors (its SQL and schema codes are reused)."""
    key = id(con)
    d = _DECODERS.get(key)
    if d is None or d.con is not con or d.connectors != connectors:
        d = _DECODERS[key] = ColumnarDecoder(con, dict(connectors))
    return d


def land_file_columnar(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    rel: str,
    connectors: Mapping[str, dict],
    bar: tqdm,
    summary,  # files.FilesSummary
    chunk_bytes: int | None = None,
    *,
    stop_after_chunks: int | None = None,  # tests: land this many chunks, then return
    pool=None,  # decoder "parallel": a process pool, or "inline" (the same code, here)
) -> None:
    """Land one CDC file (see the module). `summary` takes each chunk as it commits.

    With `pool`, each chunk is decoded by the reference code (`columnar.decode_chunk_reference`)
    in the pool's worker processes, a few chunks ahead of the one being landed; chunks still
    land in order, one transaction each, so the progress and ledgers are those of `columnar`."""
    from pipelines.lib.cdc.files import BATCH_SIZE, FILES_SOURCE, _land_file

    sha = sha256_cached(con, path)
    if scalar(con, "select count(*) from meta.files_landed where sha256 = ?", [sha]):
        bar.update(path.stat().st_size)
        summary.files_skipped.append(rel)
        return
    with open(path, "rb") as fh:
        head = fh.read(4)
        if any(head.startswith(bom) for bom, _, _ in _WIDE_BOMS):  # UTF-16/32: the reference
            _land_file(con, path, rel, connectors, BATCH_SIZE, bar, summary)
            return
        con.execute(PROGRESS_DDL)
        row = con.execute(
            "select next_byte, next_line, rows_landed, dead_letters, lines_read, blank_lines "
            "from meta.cdc_file_progress where sha256 = ?",
            [sha],
        ).fetchone()
        if row is None:
            offset = len(BOM_UTF8) if head.startswith(BOM_UTF8) else 0
            line, landed, dead, lines_read, blank = 1, 0, 0, 0, 0
        else:
            offset, line, landed, dead, lines_read, blank = row
        fh.seek(offset)
        bar.update(offset)
        size = path.stat().st_size
        chunks = read_chunks(fh, line, offset, chunk_bytes or CHUNK_BYTES)
        if pool is None:
            decoder = _decoder(con, connectors)
            decoded = ((chunk, decoder.decode(chunk, sha)) for chunk in chunks)
        elif pool == "inline":
            decoded = ((c, decode_chunk_reference(c, sha, connectors)) for c in chunks)
        else:
            decoded = _ahead(pool, chunks, sha, dict(connectors))
        for done, (chunk, out) in enumerate(decoded, start=1):
            last = chunk.end_offset >= size
            totals = (landed, dead, lines_read + out.lines, blank + out.blank)

            def ledger(
                c: duckdb.DuckDBPyConnection, batch: BatchResult, last=last, t=totals, chunk=chunk
            ):
                rows = t[0] + sum(batch.landed.values())
                letters = t[1] + batch.dead_letters
                if last:
                    c.execute(
                        "insert or ignore into meta.files_landed values (?, ?, ?, ?, ?, ?)",
                        [sha, FILES_SOURCE, rel, rows, letters, utcnow()],
                    )
                    c.execute("delete from meta.cdc_file_progress where sha256 = ?", [sha])
                else:
                    c.execute(
                        "insert or replace into meta.cdc_file_progress "
                        "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            sha,
                            rel,
                            chunk.end_offset,
                            chunk.first_line + len(chunk),
                            rows,
                            letters,
                            t[2],
                            t[3],
                            utcnow(),
                        ],
                    )

            batch = land_decoded(
                con,
                out.batch,
                source="file",
                extra_dead_letters=out.line_letters,
                in_transaction=ledger,
            )
            mark(f"cdc_chunk:{chunk.end_offset}")  # committed (for whoever watches: kill tests)
            landed += sum(batch.landed.values())
            dead += batch.dead_letters
            lines_read, blank = totals[2], totals[3]
            summary.result = summary.result.merge(batch)
            summary.bad_lines += len(out.line_letters)
            summary.lines_read += out.lines
            summary.blank_lines += out.blank
            summary.columnar_rows += out.columnar_rows
            bar.update(len(chunk.data))
            if stop_after_chunks is not None and done >= stop_after_chunks and not last:
                if hasattr(decoded, "close"):
                    decoded.close()  # the chunks decoded ahead are dropped, never landed
                return
        if offset >= size and row is None:  # an empty file (or a BOM alone): landed, no rows
            con.execute(
                "insert or ignore into meta.files_landed values (?, ?, ?, ?, ?, ?)",
                [sha, FILES_SOURCE, rel, 0, 0, utcnow()],
            )
    summary.files_landed.append(rel)


AHEAD_PER_WORKER = 2  # chunks in flight per worker process (each holds its bytes and its rows)


def _ahead(
    pool, chunks: Iterator[Chunk], sha: str, connectors: dict
) -> Iterator[tuple[Chunk, ChunkDecoded]]:
    """(chunk, decoded) in reading order, each decoded in `pool` while earlier ones land."""
    window = max(2, AHEAD_PER_WORKER * getattr(pool, "_max_workers", 1))
    pending: deque = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(decode_chunk_reference, chunk, sha, connectors)))
            if len(pending) >= window:
                c, fut = pending.popleft()
                yield c, fut.result()
        while pending:
            c, fut = pending.popleft()
            yield c, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
