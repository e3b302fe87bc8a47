"""Land Kafka records of Debezium change events in `raw.<prefix>_<table>` (DESIGN §3).

`land_batch` is the one way CDC rows enter the warehouse, for Kafka and for the NDJSON files alike.
In one DuckDB transaction it

1. skips records at positions already landed (in the raw table or in the dead letters), cheaply:
   per (topic, partition) only offsets below the ledger's high-water mark can have landed, and only
   those are anti-joined against the raw table;
2. decodes the rest into column lists and appends one Arrow table per raw table;
3. records undecodable records as dead letters (source `cdc`, position `topic:partition:offset`);
4. advances `meta.stream_offsets` for (source, topic, partition) to max(offset) + 1, never back.

Replaying a topic from offset 0 therefore changes nothing.
"""

from __future__ import annotations

import gc
import json
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

from pipelines.lib.cdc.decode import (
    DECIMAL_MODES,
    EPOCH,
    N_ROW_META,
    ROW_META,
    DecodeError,
    TableDecoder,
    decimal_mode_for,
    decimal_type,
    key_object,
    loads,
    parse_key,
)
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
    allocation burst makes the collector walk every live object again: about a quarter of the
    landing time. Nothing a batch allocates is cyclic, so nothing is leaked; the collector's
    previous state is restored on exit.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_connectors(landing_dir: Path | None) -> dict[str, dict]:
    """Connector settings per topic prefix from `<landing>/cdc/connectors.json` ({} if absent).

    Only `decimal.handling.mode` matters to the decoder (default `precise`); a bad value is a
    configuration error and raises `ValueError`.
    """
    if landing_dir is None:
        return {}
    path = Path(landing_dir) / CONNECTORS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{prefix: {{setting: value}}}}")
    for prefix, conf in data.items():
        mode = conf.get("decimal.handling.mode")
        if mode is not None and mode not in DECIMAL_MODES:
            raise ValueError(
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


# -- Arrow column types for the raw tables ------------------------------------------------------


def _arrow_type(kind: str) -> pa.DataType:
    dec = decimal_type(kind)
    if dec:
        return pa.decimal128(*dec)
    return {
        "bigint": pa.int64(),
        "integer": pa.int32(),
        "varchar": pa.string(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "json": pa.string(),
    }[kind]


def _column_array(kind: str, values: Sequence) -> pa.Array:
    """Arrow array of converter outputs (see decode: unscaled ints, µs, days)."""
    typ = _arrow_type(kind)
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
# (_ingested_at is one value per batch, set in SQL.)
_META_ORDER = ["_topic", "_partition", "_offset", *ROW_META]
_META_TYPES = {
    "_topic": pa.string(),
    "_partition": pa.int32(),
    "_offset": pa.int64(),
    "_op": pa.string(),
    "_is_tombstone": pa.bool_(),
    "_source_lsn": pa.int64(),
    "_source_ts_ms": pa.int64(),
    "_source_tx_id": pa.int64(),
    "_changed_at": pa.timestamp("ms", tz="UTC"),
    "_key": pa.string(),
    "_extra": pa.string(),
}
assert set(_META_ORDER) | {"_ingested_at"} == set(CDC_META_COLUMNS)


class _TableBuffer:
    """Decoded rows of one raw table in one batch, with their records (for the position)."""

    def __init__(self, table: CdcTable) -> None:
        self.table = table
        self.records: list[KafkaRecord | ParsedRecord] = []
        self.rows: list[tuple] = []

    def __len__(self) -> int:
        return len(self.rows)

    def max_changed_ms(self) -> int | None:
        values = [r[5] for r in self.rows if r[5] is not None]
        return max(values) if values else None

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


def _write_table(con: duckdb.DuckDBPyConnection, buf: _TableBuffer, ingested_at: datetime) -> None:
    arrow = buf.to_arrow()
    view = f"__cdc_{buf.table.raw_table}"
    cols = [*_META_ORDER, *buf.table.columns]
    target = ", ".join(f'"{c}"' for c in [*cols, "_ingested_at"])
    select = ", ".join(f'"{c}"' for c in cols)
    con.register(view, arrow)
    try:
        con.execute(
            f"insert into raw.{buf.table.raw_table} ({target}) "
            f"select {select}, ?::timestamptz from {view}",
            [ingested_at],
        )
    finally:
        con.unregister(view)


def _unexpected(exc: Exception) -> str:
    """Reason for a record that broke the decoder itself (a bug, but never a lost batch)."""
    return f"value: undecodable ({type(exc).__name__}: {exc})"


def _position(rec: KafkaRecord) -> str:
    return f"{rec.topic}:{rec.partition}:{rec.offset}"


def _raw_text(rec: KafkaRecord | ParsedRecord) -> str | None:
    data = rec.value if rec.value is not None else rec.key
    if data is None:
        return None
    if type(rec) is ParsedRecord:
        return data if type(data) is str else orjson.dumps(data).decode()
    return bytes(data).decode("utf-8", errors="replace")


def _high_water(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], int]:
    """(topic, partition) -> highest next_offset of any source: offsets at or above it are new."""
    rows = con.execute(
        'select topic, "partition", max(next_offset) from meta.stream_offsets group by all'
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def _already_landed(
    con: duckdb.DuckDBPyConnection, candidates: Sequence[KafkaRecord]
) -> tuple[set[tuple[str, int, int]], set[tuple[str, int, int]]]:
    """Of records below the high-water mark: positions in raw tables, positions in dead letters."""
    in_raw: set[tuple[str, int, int]] = set()
    in_dead: set[tuple[str, int, int]] = set()
    if not candidates:
        return in_raw, in_dead
    by_table: dict[str, list[KafkaRecord]] = defaultdict(list)
    for rec in candidates:
        table = CDC_BY_TOPIC.get(rec.topic)
        if table is not None:
            by_table[table.raw_table].append(rec)
    for raw_table, recs in by_table.items():
        cand = pa.table(
            {
                "topic": pa.array([r.topic for r in recs], pa.string()),
                "partition": pa.array([r.partition for r in recs], pa.int32()),
                "offset": pa.array([r.offset for r in recs], pa.int64()),
            }
        )
        lo, hi = min(r.offset for r in recs), max(r.offset for r in recs)
        con.register("__cdc_candidates", cand)
        try:
            rows = con.execute(
                f"select distinct r._topic, r._partition, r._offset from raw.{raw_table} r "
                "join __cdc_candidates c on r._offset = c.offset and r._partition = c.partition "
                "and r._topic = c.topic where r._offset between ? and ?",
                [lo, hi],
            ).fetchall()
        finally:
            con.unregister("__cdc_candidates")
        in_raw.update(rows)
    positions = pa.table({"position": pa.array([_position(r) for r in candidates], pa.string())})
    con.register("__cdc_positions", positions)
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
    ingested_at = utcnow()
    result = BatchResult.empty()
    with gc_paused(), transaction(con):
        # 1. positions: group by partition, dedupe within the batch, skip what already landed
        by_part: dict[tuple[str, int], list] = {}
        last_part = None
        group: list = []
        for rec in records:
            part = (rec.topic, rec.partition)
            if part != last_part:
                group = by_part.setdefault(part, [])
                last_part = part
            group.append(rec)
        hwm = _high_water(con)
        next_offsets: dict[tuple[str, int], int] = {}
        unique: list[KafkaRecord | ParsedRecord] = []
        below: list[KafkaRecord | ParsedRecord] = []
        for part, group in by_part.items():
            offsets = [r.offset for r in group]
            next_offsets[part] = max(offsets) + 1
            if len(set(offsets)) != len(offsets):  # the same position twice: the first wins
                seen: set[int] = set()
                kept = []
                for r in group:
                    if r.offset not in seen:
                        seen.add(r.offset)
                        kept.append(r)
                result.skipped += len(group) - len(kept)
                group = kept
            high = hwm.get(part, 0)
            if min(offsets) < high:  # only these can have landed before
                below.extend(r for r in group if r.offset < high)
            unique.extend(group)
        in_raw, in_dead = _already_landed(con, below)
        retried: set[tuple[str, int, int]] = set()
        if in_raw or in_dead:
            todo = []
            for rec in unique:
                pos = (rec.topic, rec.partition, rec.offset)
                if pos in in_raw or (pos in in_dead and not retry_dead_letters):
                    result.skipped += 1
                elif pos in in_dead:
                    retried.add(pos)
                    todo.append(rec)
                else:
                    todo.append(rec)
        else:
            todo = unique

        # 2. decode into rows, one buffer per raw table
        decoders: dict[str, TableDecoder | None] = {}
        buffers: dict[str, _TableBuffer] = {}
        letters: list[DeadLetter] = list(extra_dead_letters)
        letter_tables: list[str | None] = [None] * len(letters)
        current = None
        decoder = None
        buf_recs: list = []
        buf_rows: list = []
        for rec in todo:
            topic = rec.topic
            if topic != current:
                current = topic
                if topic not in decoders:
                    table = CDC_BY_TOPIC.get(topic)
                    decoders[topic] = (
                        None
                        if table is None
                        else TableDecoder(table, decimal_mode_for(topic, connectors))
                    )
                decoder = decoders[topic]
                if decoder is not None:
                    buf = buffers.get(topic)
                    if buf is None:
                        buf = buffers[topic] = _TableBuffer(decoder.table)
                    buf_recs, buf_rows = buf.records, buf.rows
            try:
                if decoder is None:
                    raise DecodeError("topic", f"unknown topic {topic!r} (no raw table for it)")
                if type(rec) is ParsedRecord:
                    k, value = rec.key, rec.value
                    key = parse_key(k) if type(k) is str else key_object(k)
                    if type(value) is str:
                        value = loads(value, "value")
                else:
                    key = parse_key(rec.key)
                    value = None if rec.value is None else loads(rec.value, "value")
                row = decoder.decode(key, value)
            except Exception as exc:  # a record never stops the batch
                reason = str(exc) if isinstance(exc, DecodeError) else _unexpected(exc)
                letters.append(
                    DeadLetter(DEAD_LETTER_SOURCE, _position(rec), _raw_text(rec), reason)
                )
                known = (rec.topic, rec.partition, rec.offset) in retried
                letter_tables.append(
                    None if known else decoder.table.raw_table if decoder else topic
                )
                continue
            buf_recs.append(rec)
            buf_rows.append(row)

        # 3. write rows, dead letters, ledger
        for buf in buffers.values():
            if not buf.rows:  # every record of the topic was a dead letter
                continue
            _write_table(con, buf, ingested_at)
            name = buf.table.raw_table
            result.landed[name] = result.landed.get(name, 0) + len(buf)
            max_ms = buf.max_changed_ms()
            if max_ms is not None:
                at = EPOCH + timedelta(milliseconds=max_ms)
                prev = result.changed_at_by_table.get(name)
                result.changed_at_by_table[name] = at if prev is None or at > prev else prev
        if result.changed_at_by_table:
            result.max_changed_at = max(result.changed_at_by_table.values())
        if retried:
            recovered = [
                _position(r)
                for buf in buffers.values()
                for r in buf.records
                if (r.topic, r.partition, r.offset) in retried
            ]
            if recovered:
                con.executemany(
                    "delete from meta.dead_letters where source = ? and position = ?",
                    [(DEAD_LETTER_SOURCE, p) for p in recovered],
                )
                result.recovered = len(recovered)
        if letters:
            result.dead_letters = write_dead_letters(con, letters)
            for name in letter_tables:
                if name is not None:
                    result.dead_letters_by_table[name] = (
                        result.dead_letters_by_table.get(name, 0) + 1
                    )
        _advance_ledger(con, source, next_offsets)
        if in_transaction is not None:
            in_transaction(con, result)
    return result


def landed_counts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Rows per raw CDC table (for summaries and tests)."""
    out = {}
    for t in CDC_BY_TOPIC.values():
        out[t.raw_table] = scalar(con, f"select count(*) from raw.{t.raw_table}")
    return out
