"""Land Kafka records of Debezium change events in `raw.<prefix>_<table>` (DESIGN §3).

`land_batch` is the one way CDC rows enter the warehouse, for Kafka and for the NDJSON files alike.
It is two steps, so that the Kafka prefetch children can decode while the lander writes:

- `decode_batch` (no warehouse) decodes the records into one Arrow table per raw table, and the
  undecodable ones into dead letters (source `cdc`, position `topic:partition:offset`);
- `land_decoded`, in one DuckDB transaction,
  1. skips records at positions already landed (in the raw table or in the dead letters),
     cheaply: per (topic, partition) only offsets below the ledger's high-water mark can have
     landed, and only those are looked up;
  2. appends the Arrow tables and records the dead letters;
  3. advances `meta.stream_offsets` for (source, topic, partition) to max(offset) + 1, never back.

Replaying a topic from offset 0 therefore changes nothing.
"""

from __future__ import annotations

import gc
import json
import stat
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import ConfigError
from pipelines.lib.cdc.decode import (
    DECIMAL_MODES,
    EPOCH,
    N_ROW_META,
    ROW_META,
    DecodeError,
    TableDecoder,
    decimal_mode_for,
    dumps,
    key_object,
    loads,
    parse_key,
)
from pipelines.lib.coltypes import arrow_type
from pipelines.lib.contracts import CDC_BY_TOPIC, CDC_META_COLUMNS, CdcTable
from pipelines.lib.warehouse import (
    DeadLetter,
    scalar,
    transaction,
    utcnow,
    write_dead_letters,
)

DEAD_LETTER_SOURCE = "cdc"
CONNECTORS_FILE = Path("cdc") / "connectors.json"


@dataclass(frozen=True)
class KafkaRecord:
    """One Kafka record as consumed: its position and the raw key and value bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ParsedRecord(NamedTuple):
    """A Kafka record whose key and value are already parsed JSON (read from a file).

    Lands exactly like the `KafkaRecord` holding their bytes, without parsing twice. As in the
    NDJSON files, a `value` (or `key`) that is a JSON string stands for raw bytes, which are
    parsed (and may not be valid JSON); None is a tombstone. (A tuple: cheap to make by the
    million.)
    """

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any

    def to_kafka(self) -> KafkaRecord:
        return KafkaRecord(
            self.topic, self.partition, self.offset, _bytes(self.key), _bytes(self.value)
        )


def _bytes(obj: Any) -> bytes | None:
    if obj is None:
        return None
    if type(obj) is str:
        return obj.encode("utf-8")
    return orjson.dumps(obj)


@dataclass
class BatchResult:
    landed: dict[str, int]  # raw table -> rows landed (new only)
    dead_letters: int  # new dead letters
    skipped: int  # records at positions already landed (replays)
    max_changed_at: datetime | None
    # per raw table (or topic, for unknown topics): new dead letters, last source change time
    dead_letters_by_table: dict[str, int] = field(default_factory=dict)
    changed_at_by_table: dict[str, datetime] = field(default_factory=dict)
    # former dead letters that decoded this time and landed (only with retry_dead_letters)
    recovered: int = 0

    def merge(self, other: BatchResult) -> BatchResult:
        """Sum of two results (for callers that land many batches)."""
        landed = dict(self.landed)
        for t, n in other.landed.items():
            landed[t] = landed.get(t, 0) + n
        dead = dict(self.dead_letters_by_table)
        for t, n in other.dead_letters_by_table.items():
            dead[t] = dead.get(t, 0) + n
        changed = dict(self.changed_at_by_table)
        for t, at in other.changed_at_by_table.items():
            changed[t] = max(at, changed[t]) if t in changed else at
        maxes = [x for x in (self.max_changed_at, other.max_changed_at) if x is not None]
        return BatchResult(
            landed=landed,
            dead_letters=self.dead_letters + other.dead_letters,
            skipped=self.skipped + other.skipped,
            max_changed_at=max(maxes) if maxes else None,
            dead_letters_by_table=dead,
            changed_at_by_table=changed,
            recovered=self.recovered + other.recovered,
        )

    @classmethod
    def empty(cls) -> BatchResult:
        return cls(landed={}, dead_letters=0, skipped=0, max_changed_at=None)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a batch.

    A batch allocates hundreds of thousands of acyclic objects (parsed envelopes, rows), and each
    allocation burst would make the collector walk every live object again. Nothing a batch
    allocates is cyclic, so nothing is leaked; the collector's previous state is restored on exit.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ConnectorsError(ConfigError, ValueError):
    """`cdc/connectors.json` is unusable: a configuration error (exit 2), not a dead letter,
    since a wrong decimal mode would decode every bare envelope wrongly."""


def load_connectors(landing_dir: Path | None) -> dict[str, dict]:
    """Connector settings per topic prefix from `<landing>/cdc/connectors.json` ({} if absent).

    Only `decimal.handling.mode` matters to the decoder (default `precise`); a bad value, a file
    that is not JSON or not readable, or a path that is not a regular file (a directory, a FIFO,
    a symbolic link, which is not followed) is a configuration error: `ConnectorsError`, a
    `ConfigError` and a `ValueError`.
    """
    if landing_dir is None:
        return {}
    path = Path(landing_dir) / CONNECTORS_FILE
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # no cdc/ folder (scan_cdc_dir reports it)
        return {}
    except OSError as exc:
        raise ConnectorsError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link (not followed)" if stat.S_ISLNK(mode) else "not a regular file"
        raise ConnectorsError(f"{path}: {kind}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise ConnectorsError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConnectorsError(f"{path}: not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConnectorsError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConnectorsError(f"{path}: expected {{prefix: {{setting: value}}}}")
    for prefix, conf in data.items():
        mode = conf.get("decimal.handling.mode")
        if mode is not None and mode not in DECIMAL_MODES:
            raise ConnectorsError(
                f"{path}: {prefix}.decimal.handling.mode must be one of {DECIMAL_MODES}, "
                f"got {mode!r}"
            )
    return data


def resume_offsets(con: duckdb.DuckDBPyConnection, source: str) -> dict[tuple[str, int], int]:
    """The stream ledger of one source: (topic, partition) -> next offset to read."""
    rows = con.execute(
        'select topic, "partition", next_offset from meta.stream_offsets where source = ?',
        [source],
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


# -- Arrow columns for the raw tables (types from coltypes) ------------------------------------


def _column_array(kind: str, values: Sequence) -> pa.Array:
    """Arrow array of converter outputs (see decode: unscaled ints, µs, days)."""
    typ = arrow_type(kind)
    if pa.types.is_decimal(typ) and typ.precision <= 18:
        # unscaled int64 -> decimal128: low word the value, high word its sign extension
        ints = pa.array(values, pa.int64())
        lo = np.frombuffer(ints.buffers()[1], dtype=np.int64, count=len(ints))
        words = np.empty((len(ints), 2), dtype=np.int64)
        words[:, 0] = lo
        words[:, 1] = lo >> 63
        return pa.Array.from_buffers(
            typ, len(ints), [ints.buffers()[0], pa.py_buffer(words)], null_count=ints.null_count
        )
    return pa.array(values, type=typ)


# Metadata columns in the order rows are built: the position, then decode.ROW_META.
# (_ingested_at is one value per batch, set in SQL; the decoder gives _changed_at in ms, which
# DuckDB widens to the column's µs on insert.)
_META_ORDER = ["_topic", "_partition", "_offset", *ROW_META]
_META_TYPES = {
    **{name: arrow_type(CDC_META_COLUMNS[name]) for name in _META_ORDER},
    "_changed_at": pa.timestamp("ms", tz="UTC"),
}
assert set(_META_ORDER) | {"_ingested_at"} == set(CDC_META_COLUMNS)


class _TableBuffer:
    """Decoded rows of one raw table in one batch, with their records (for the position)."""

    def __init__(self, table: CdcTable) -> None:
        self.table = table
        self.records: list[KafkaRecord | ParsedRecord] = []
        self.rows: list[tuple] = []

    def to_arrow(self) -> pa.Table:
        recs = self.records
        columns = list(zip(*self.rows, strict=True))
        arrays = [
            pa.array([r.topic for r in recs], pa.string()),
            pa.array([r.partition for r in recs], pa.int32()),
            pa.array([r.offset for r in recs], pa.int64()),
        ]
        arrays += [pa.array(columns[i], _META_TYPES[n]) for i, n in enumerate(ROW_META)]
        for i, kind in enumerate(self.table.columns.values()):
            arrays.append(_column_array(kind, columns[N_ROW_META + i]))
        return pa.Table.from_arrays(arrays, names=[*_META_ORDER, *self.table.columns])


Position = tuple[str, int, int]  # (topic, partition, offset)


def _positions(table: pa.Table) -> Iterator[Position]:
    return zip(
        table["_topic"].to_pylist(),
        table["_partition"].to_pylist(),
        table["_offset"].to_pylist(),
        strict=True,
    )


def _keep_rows(table: pa.Table, keep: Callable[[Position], bool]) -> pa.Table:
    """The rows whose position passes `keep` (a replay's or a cut's slow path, not the usual)."""
    return table.filter(pa.array([keep(pos) for pos in _positions(table)], pa.bool_()))


@dataclass
class DecodedBatch:
    """A batch of records decoded without the warehouse: what `land_decoded` writes.

    `decode_batch` makes it, in the landing process or in a Kafka prefetch child (so that the
    lander only writes DuckDB). Picklable: the rows are Arrow tables. Every record of the batch
    is exactly one of: a row of `tables`, a dead letter in `letters`, or a repeat of a position
    already in the batch (`skipped`, the first wins).
    """

    chunks: list[tuple[str, int, array]]  # (topic, partition, offsets): every record, in order
    tables: dict[str, pa.Table]  # raw table -> decoded rows (with _topic, _partition, _offset)
    letters: list[tuple[Position, str, DeadLetter]]  # (position, raw table or topic, letter)
    # (topic, partition) -> the offset after its highest, if known (`decode_batch` knows it from
    # its per-partition pass; else `next_offsets` computes it from the chunks, one per run of
    # a partition in reading order: many for a file whose partitions interleave)
    next_by_part: dict[tuple[str, int], int] | None = None

    @property
    def count(self) -> int:
        """Records in the batch (rows, dead letters and repeats)."""
        return sum(len(offsets) for _, _, offsets in self.chunks)

    @property
    def skipped(self) -> int:
        """Repeated positions within the batch."""
        rows = sum(t.num_rows for t in self.tables.values())
        return self.count - rows - len(self.letters)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the offset after the batch's highest: the ledger's next."""
        if self.next_by_part is not None:
            return dict(self.next_by_part)
        out: dict[tuple[str, int], int] = {}
        for topic, partition, offsets in self.chunks:
            part, high = (topic, partition), max(offsets) + 1
            if out.get(part, -1) < high:
                out[part] = high
        return out

    def head(self, n: int) -> DecodedBatch:
        """The first n records in reading order. A partition's offsets must increase in it, as
        they do in a Kafka batch: each partition keeps a prefix of its reads."""
        chunks = []
        last: dict[tuple[str, int], int] = {}  # the highest offset kept, per partition
        for topic, partition, offsets in self.chunks:
            if n <= 0:
                break
            kept = offsets[:n]
            chunks.append((topic, partition, kept))
            last[(topic, partition)] = kept[-1]
            n -= len(kept)

        def keep(pos: Position) -> bool:
            return pos[2] <= last.get((pos[0], pos[1]), -1)

        return DecodedBatch(
            chunks=chunks,
            tables={name: _keep_rows(t, keep) for name, t in self.tables.items()},
            letters=[letter for letter in self.letters if keep(letter[0])],
        )


def _write_table(
    con: duckdb.DuckDBPyConnection, raw_table: str, arrow: pa.Table, ingested_at: datetime
) -> None:
    view = f"__cdc_{raw_table}"
    cols = arrow.column_names
    target = ", ".join(f'"{c}"' for c in [*cols, "_ingested_at"])
    select = ", ".join(f'"{c}"' for c in cols)
    con.register(view, arrow)
    try:
        con.execute(
            f"insert into raw.{raw_table} ({target}) select {select}, ?::timestamptz from {view}",
            [ingested_at],
        )
    finally:
        con.unregister(view)


def _unexpected(exc: Exception) -> str:
    """Reason for a record that broke the decoder itself (a bug, but never a lost batch)."""
    return f"value: undecodable ({type(exc).__name__}: {exc})"


def _position_text(pos: Position) -> str:
    """A dead letter's position: `topic:partition:offset`."""
    return f"{pos[0]}:{pos[1]}:{pos[2]}"


def _raw_text(rec: KafkaRecord | ParsedRecord) -> str | None:
    data = rec.value if rec.value is not None else rec.key
    if data is None:
        return None
    if type(rec) is ParsedRecord:
        return data if type(data) is str else dumps(data)
    return bytes(data).decode("utf-8", errors="replace")


def _high_water(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], int]:
    """(topic, partition) -> highest next_offset of any source: offsets at or above it are new."""
    rows = con.execute(
        'select topic, "partition", max(next_offset) from meta.stream_offsets group by all'
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def _already_landed(
    con: duckdb.DuckDBPyConnection, candidates: set[Position]
) -> tuple[set[Position], set[Position]]:
    """Of positions below the high-water mark: those in raw tables, those in dead letters."""
    in_raw: set[Position] = set()
    in_dead: set[Position] = set()
    if not candidates:
        return in_raw, in_dead
    by_table: dict[str, list[Position]] = defaultdict(list)
    for pos in candidates:
        table = CDC_BY_TOPIC.get(pos[0])
        if table is not None:
            by_table[table.raw_table].append(pos)
    for raw_table, positions in by_table.items():
        topics, partitions, offsets = zip(*positions, strict=True)
        cand = pa.table(
            {
                "topic": pa.array(topics, pa.string()),
                "partition": pa.array(partitions, pa.int32()),
                "offset": pa.array(offsets, pa.int64()),
            }
        )
        con.register("__cdc_candidates", cand)
        try:
            rows = con.execute(
                f"select distinct r._topic, r._partition, r._offset from raw.{raw_table} r "
                "join __cdc_candidates c on r._offset = c.offset and r._partition = c.partition "
                "and r._topic = c.topic where r._offset between ? and ?",
                [min(offsets), max(offsets)],
            ).fetchall()
        finally:
            con.unregister("__cdc_candidates")
        in_raw.update(rows)
    texts = pa.table({"position": pa.array([_position_text(p) for p in candidates], pa.string())})
    con.register("__cdc_positions", texts)
    try:
        rows = con.execute(
            "select d.position from meta.dead_letters d join __cdc_positions p "
            "on d.position = p.position where d.source = ?",
            [DEAD_LETTER_SOURCE],
        ).fetchall()
    finally:
        con.unregister("__cdc_positions")
    for (pos,) in rows:
        topic, partition, offset = pos.rsplit(":", 2)
        in_dead.add((topic, int(partition), int(offset)))
    return in_raw, in_dead


def _advance_ledger(
    con: duckdb.DuckDBPyConnection, source: str, next_offsets: Mapping[tuple[str, int], int]
) -> None:
    if not next_offsets:
        return
    now = utcnow()
    rows = sorted(next_offsets.items())
    values = ", ".join(["(?, ?, ?, ?, ?::timestamptz)"] * len(rows))
    con.execute(
        f"insert into meta.stream_offsets select * from (values {values}) "
        'on conflict (source, topic, "partition") do update set '
        "next_offset = greatest(next_offset, excluded.next_offset), "
        "updated_at = excluded.updated_at",
        [x for (t, p), o in rows for x in (source, t, p, o, now)],
    )


_DECODERS: dict[tuple[str, str], TableDecoder] = {}


def _decoder(topic: str, decimal_mode: str) -> TableDecoder | None:
    """The decoder of a topic's table (None: no raw table), made once per process and table: it
    compiles its row builders, which a small Kafka batch would otherwise pay for every time."""
    table = CDC_BY_TOPIC.get(topic)
    if table is None:
        return None
    decoder = _DECODERS.get((topic, decimal_mode))
    if decoder is None or decoder.table is not table:
        decoder = _DECODERS[(topic, decimal_mode)] = TableDecoder(table, decimal_mode)
    return decoder


def decode_batch(
    records: Sequence[KafkaRecord | ParsedRecord], connectors: Mapping[str, dict]
) -> DecodedBatch:
    """Decode one batch of records into Arrow rows per raw table and dead letters.

    Needs no warehouse: `land_decoded` later skips what already landed. `connectors` maps topic
    prefixes to connector settings (`decimal.handling.mode` for bare envelopes;
    `load_connectors`). A position repeated within the batch is decoded once (the first wins).
    """
    with gc_paused():
        # positions: reading-order chunks, and the records by partition without repeats
        chunks: list[tuple[str, int, list[int]]] = []
        by_part: dict[tuple[str, int], list] = {}
        last_topic = last_partition = None
        group_append = chunk_append = None
        for rec in records:
            topic, partition = rec.topic, rec.partition
            if partition != last_partition or topic != last_topic:
                group_append = by_part.setdefault((topic, partition), []).append
                chunk: list[int] = []
                chunk_append = chunk.append
                chunks.append((topic, partition, chunk))
                last_topic, last_partition = topic, partition
            group_append(rec)
            chunk_append(rec.offset)
        unique: list[KafkaRecord | ParsedRecord] = []
        next_by_part: dict[tuple[str, int], int] = {}
        for part, group in by_part.items():
            offsets = [r.offset for r in group]
            next_by_part[part] = max(offsets) + 1
            if len(set(offsets)) != len(offsets):  # the same position twice: the first wins
                seen: set[int] = set()
                kept = []
                for r in group:
                    if r.offset not in seen:
                        seen.add(r.offset)
                        kept.append(r)
                group = kept
            unique.extend(group)

        # decode into rows, one buffer per raw table
        decoders: dict[str, TableDecoder | None] = {}
        buffers: dict[str, _TableBuffer] = {}
        letters: list[tuple[Position, str, DeadLetter]] = []
        current = None
        decoder = None
        decode = None
        recs_append = rows_append = None
        for rec in unique:
            topic = rec.topic
            if topic != current:
                current = topic
                if topic not in decoders:
                    decoders[topic] = _decoder(topic, decimal_mode_for(topic, connectors))
                decoder = decoders[topic]
                if decoder is not None:
                    decode = decoder.fast
                    buf = buffers.get(topic)
                    if buf is None:
                        buf = buffers[topic] = _TableBuffer(decoder.table)
                    recs_append, rows_append = buf.records.append, buf.rows.append
            try:
                if decoder is None:
                    raise DecodeError("topic", f"unknown topic {topic!r} (no raw table for it)")
                if type(rec) is ParsedRecord:
                    key, value = rec.key, rec.value
                    if type(key) is not dict or (len(key) == 2 and "payload" in key):
                        key = parse_key(key) if type(key) is str else key_object(key)
                    if type(value) is str:
                        value = loads(value, "value")
                else:
                    key = parse_key(rec.key)
                    value = None if rec.value is None else loads(rec.value, "value")
                row = decode(key, value)
            except Exception as exc:  # a record never stops the batch
                reason = str(exc) if isinstance(exc, DecodeError) else _unexpected(exc)
                pos = (rec.topic, rec.partition, rec.offset)
                letter = DeadLetter(DEAD_LETTER_SOURCE, _position_text(pos), _raw_text(rec), reason)
                label = decoder.table.raw_table if decoder else topic
                letters.append((pos, label, letter))
                continue
            recs_append(rec)
            rows_append(row)

        tables = {}
        for buf in buffers.values():
            if buf.rows:  # else every record of the topic was a dead letter
                name = buf.table.raw_table
                arrow = buf.to_arrow()
                tables[name] = pa.concat_tables([tables[name], arrow]) if name in tables else arrow
    return DecodedBatch(
        chunks=[(t, p, array("q", offsets)) for t, p, offsets in chunks],
        tables=tables,
        letters=letters,
        next_by_part=next_by_part,
    )


def land_decoded(
    con: duckdb.DuckDBPyConnection,
    decoded: DecodedBatch,
    *,
    source: str,
    retry_dead_letters: bool = False,
    extra_dead_letters: Iterable[DeadLetter] = (),
    in_transaction: Callable[[duckdb.DuckDBPyConnection, BatchResult], None] | None = None,
) -> BatchResult:
    """Land one decoded batch, atomically with its ledger positions (see `land_batch`)."""
    ingested_at = utcnow()
    result = BatchResult.empty()
    with gc_paused(), transaction(con):
        # 1. skip what already landed: only positions below the high-water mark can have
        hwm = _high_water(con)
        below: set[Position] = set()
        for topic, partition, offsets in decoded.chunks:
            high = hwm.get((topic, partition), 0)
            if min(offsets) < high:
                below.update((topic, partition, o) for o in offsets if o < high)
        in_raw, in_dead = _already_landed(con, below)
        drop: set[Position] = set()
        retried: set[Position] = set()
        for pos in in_raw | in_dead:
            if pos in in_raw or not retry_dead_letters:
                drop.add(pos)
            else:
                retried.add(pos)
        tables, letters = decoded.tables, decoded.letters
        if drop:
            tables = {n: _keep_rows(t, lambda pos: pos not in drop) for n, t in tables.items()}
            letters = [letter for letter in letters if letter[0] not in drop]
        result.skipped = decoded.skipped + len(drop)

        # 2. write rows, dead letters, ledger
        for name, table in tables.items():
            if not table.num_rows:
                continue
            _write_table(con, name, table, ingested_at)
            result.landed[name] = result.landed.get(name, 0) + table.num_rows
            max_ms = pc.max(table["_changed_at"].cast(pa.int64())).as_py()
            if max_ms is not None:
                at = EPOCH + timedelta(milliseconds=max_ms)
                prev = result.changed_at_by_table.get(name)
                result.changed_at_by_table[name] = at if prev is None or at > prev else prev
        if result.changed_at_by_table:
            result.max_changed_at = max(result.changed_at_by_table.values())
        if retried:
            recovered = [
                _position_text(pos)
                for table in tables.values()
                for pos in _positions(table)
                if pos in retried
            ]
            if recovered:
                con.executemany(
                    "delete from meta.dead_letters where source = ? and position = ?",
                    [(DEAD_LETTER_SOURCE, p) for p in recovered],
                )
                result.recovered = len(recovered)
        new_letters = list(extra_dead_letters)
        labels: list[str | None] = [None] * len(new_letters)
        for pos, label, letter in letters:
            new_letters.append(letter)
            labels.append(None if pos in retried else label)  # a retried one is no new letter
        if new_letters:
            result.dead_letters = write_dead_letters(con, new_letters)
            # a letter already recorded (a file line after a crash, a retried position that
            # still fails) was skipped as a duplicate: every record is landed, dead or skipped
            result.skipped += len(new_letters) - result.dead_letters
            for name in labels:
                if name is not None:
                    result.dead_letters_by_table[name] = (
                        result.dead_letters_by_table.get(name, 0) + 1
                    )
        _advance_ledger(con, source, decoded.next_offsets())
        if in_transaction is not None:
            in_transaction(con, result)
    return result


def land_batch(
    con: duckdb.DuckDBPyConnection,
    records: Sequence[KafkaRecord | ParsedRecord],
    *,
    source: str,
    connectors: Mapping[str, dict],
    retry_dead_letters: bool = False,
    extra_dead_letters: Iterable[DeadLetter] = (),
    in_transaction: Callable[[duckdb.DuckDBPyConnection, BatchResult], None] | None = None,
) -> BatchResult:
    """Decode and land one batch of Kafka records, atomically with its ledger positions.

    `source` names the stream ledger (`kafka` or `file`). `connectors` maps topic prefixes to
    connector settings (`decimal.handling.mode` for bare envelopes; `load_connectors`).

    With `retry_dead_letters` (replay), positions that are dead letters are decoded again; those
    that decode now land and their dead letter is removed (the raw row now holds the record), the
    rest keep their dead letter. Otherwise a dead-lettered position is skipped like a landed one.

    `extra_dead_letters` (e.g. unreadable lines of a file) and `in_transaction` (e.g. the file
    ledger) are written in the same transaction.
    """
    return land_decoded(
        con,
        decode_batch(records, connectors),
        source=source,
        retry_dead_letters=retry_dead_letters,
        extra_dead_letters=extra_dead_letters,
        in_transaction=in_transaction,
    )


def landed_counts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Rows per raw CDC table (for summaries and tests)."""
    out = {}
    for t in CDC_BY_TOPIC.values():
        out[t.raw_table] = scalar(con, f"select count(*) from raw.{t.raw_table}")
    return out
