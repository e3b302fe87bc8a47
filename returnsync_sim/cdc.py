"""Debezium change events written as Kafka-record NDJSON (DESIGN §2.1, §2.9).

One file per topic, `<out>/cdc/<topic>.ndjson`, one Kafka record per line:
`{"topic","partition","offset","key","value"}`. The partition is kafka-python's default
partitioner (murmur2 of the compact JSON key bytes) modulo `partitions`; offsets are consecutive per
(topic, partition) in file order. `value` is the Debezium envelope (bare or schema-wrapped), `null`
for a tombstone, or a JSON string holding raw bytes that are not valid JSON.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
from kafka.partitioner.default import murmur2

from pipelines.lib.contracts import CDC_BY_TOPIC, CDC_TABLES, CdcTable

from .files import HashedWriter

DEBEZIUM_VERSION = "3.6.0.Final"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DATE = date(1970, 1, 1)
CONNECTORS = {
    "erp": {"decimal.handling.mode": "precise"},
    "wms": {"decimal.handling.mode": "string"},
}
FULL_IDENTITY = frozenset({"account_invoice"})
DB_NAMES = {"erp": "tryton", "wms": "wms"}
TABLES = {(t.prefix, t.table): t for t in CDC_TABLES}
MALFORMED_KINDS = (
    "not_json_line",
    "bad_json_value",
    "unknown_op",
    "missing_op",
    "bad_number",
    "wrong_type",
)


def table(prefix: str, name: str) -> CdcTable:
    return TABLES[(prefix, name)]


def compact(obj) -> str:
    """Compact JSON, UTF-8, keys in insertion order (orjson: same bytes as json.dumps with
    separators=(",", ":") and ensure_ascii=False for the values we write)."""
    return orjson.dumps(obj).decode()


def key_json(key: dict) -> str:
    """The record key bytes as kafka-python would send them (compact, sorted)."""
    if len(key) == 1:
        ((name, value),) = key.items()
        if type(value) is int:  # the common case, without the json machinery
            return f'{{"{name}":{value}}}'
    return json.dumps(key, separators=(",", ":"), sort_keys=True)


def partition_for(key_bytes: bytes, partitions: int) -> int:
    """kafka-python's DefaultPartitioner for a keyed record."""
    return (murmur2(key_bytes) & 0x7FFFFFFF) % partitions


def _unscaled_b64(value: Decimal, scale: int) -> str:
    unscaled = int(value.scaleb(scale).to_integral_value())
    length = max(1, (unscaled + (unscaled < 0)).bit_length() // 8 + 1)
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def ms(dt: datetime) -> int:
    return (dt - EPOCH) // _MS


def micros(dt: datetime) -> int:
    return (dt - EPOCH) // _US


def zoned(dt: datetime) -> str:
    """io.debezium.time.ZonedTimestamp: ISO-8601 in UTC."""
    text = dt.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - EPOCH
_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH


@dataclass
class Change:
    """One row change as the database committed it (before encoding)."""

    table: CdcTable
    op: str  # c, u, d, r
    before: dict | None
    after: dict | None
    at: datetime  # commit time
    lsn: int = 0
    tx_id: int = 0
    snapshot: str = "false"

    @property
    def key(self) -> dict:
        row = self.after if self.after is not None else self.before
        pk = self.table.primary_key
        return {pk: row[pk]}


@dataclass(frozen=True)
class Encoding:
    wrapped: bool = False
    decimal_mode: str = "precise"  # precise, string, double, variable (VariableScaleDecimal)
    time_mode: str = "micro"  # micro (MicroTimestamp) or milli (Timestamp)


def encode_value(kind: str, value, enc: Encoding):
    if value is None:
        return None
    if kind == "date":
        return (value - EPOCH_DATE).days
    if kind == "timestamp":
        return ms(value) if enc.time_mode == "milli" else micros(value)
    if kind == "timestamptz":
        return zoned(value)
    if kind.startswith("decimal("):
        scale = int(kind[len("decimal(") : -1].split(",")[1])
        value = Decimal(value).quantize(Decimal(1).scaleb(-scale))
        if enc.decimal_mode == "string":
            return f"{value:.{scale}f}"
        if enc.decimal_mode == "double":
            return float(value)
        if enc.decimal_mode == "variable":
            return {"scale": scale, "value": _unscaled_b64(value, scale)}
        return _unscaled_b64(value, scale)
    if kind == "double":
        return float(value)
    return value


_ROW_ENCODERS: dict[tuple[str, Encoding], dict] = {}


def _column_encoder(kind: str, enc: Encoding):
    """A fast encoder for one column kind (None: the value is written as it is)."""
    if kind in ("bigint", "varchar", ""):
        return None
    if kind == "date":
        return lambda v: (v - EPOCH_DATE).days
    if kind == "timestamp":
        step = _MS if enc.time_mode == "milli" else _US
        return lambda v: (v - EPOCH) // step
    if kind == "timestamptz":
        return zoned
    if kind == "double":
        return float
    if kind.startswith("decimal(") and enc.decimal_mode in ("precise", "string"):
        scale = int(kind[len("decimal(") : -1].split(",")[1])
        quantum = Decimal(1).scaleb(-scale)
        if enc.decimal_mode == "string":
            return lambda v: f"{Decimal(v).quantize(quantum):.{scale}f}"
        return lambda v: _unscaled_b64(Decimal(v).quantize(quantum), scale)
    return lambda v: encode_value(kind, v, enc)


def encode_row(tbl: CdcTable, row: dict | None, enc: Encoding) -> dict | None:
    """A row's values as the connector serializes them (columns outside the contract as-is)."""
    if row is None:
        return None
    encoders = _ROW_ENCODERS.get((tbl.topic, enc))
    if encoders is None:
        encoders = _ROW_ENCODERS[(tbl.topic, enc)] = {
            col: _column_encoder(kind, enc) for col, kind in tbl.columns.items()
        }
    out = {}
    for col, val in row.items():
        f = encoders.get(col)
        out[col] = val if f is None or val is None else f(val)
    return out


def _field_schema(name: str, kind: str, enc: Encoding, optional: bool) -> dict:
    base: dict = {"optional": optional, "field": name}
    if kind == "bigint":
        return {"type": "int64", **base}
    if kind == "double":
        return {"type": "double", **base}
    if kind == "date":
        return {"type": "int32", **base, "name": "io.debezium.time.Date", "version": 1}
    if kind == "timestamp":
        name_ = (
            "io.debezium.time.Timestamp"
            if enc.time_mode == "milli"
            else ("io.debezium.time.MicroTimestamp")
        )
        return {"type": "int64", **base, "name": name_, "version": 1}
    if kind == "timestamptz":
        return {"type": "string", **base, "name": "io.debezium.time.ZonedTimestamp", "version": 1}
    if kind.startswith("decimal("):
        precision, scale = kind[len("decimal(") : -1].split(",")
        if enc.decimal_mode == "string":
            return {"type": "string", **base}
        if enc.decimal_mode == "double":
            return {"type": "double", **base}
        if enc.decimal_mode == "variable":
            return {
                "type": "struct",
                "fields": [
                    {"type": "int32", "optional": False, "field": "scale"},
                    {"type": "bytes", "optional": False, "field": "value"},
                ],
                **base,
                "name": "io.debezium.data.VariableScaleDecimal",
                "version": 1,
                "doc": "Variable scaled decimal",
            }
        return {
            "type": "bytes",
            **base,
            "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1,
            "parameters": {"scale": scale, "connect.decimal.precision": precision},
        }
    return {"type": "string", **base}


_SOURCE_FIELDS = [
    {"type": "string", "optional": False, "field": "version"},
    {"type": "string", "optional": False, "field": "connector"},
    {"type": "string", "optional": False, "field": "name"},
    {"type": "int64", "optional": False, "field": "ts_ms"},
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.data.Enum",
        "version": 1,
        "parameters": {
            "allowed": "true,first,first_in_data_collection,last_in_data_collection,"
            "last,false,incremental"
        },
        "default": "false",
        "field": "snapshot",
    },
    {"type": "string", "optional": False, "field": "db"},
    {"type": "string", "optional": True, "field": "sequence"},
    {"type": "int64", "optional": True, "field": "ts_us"},
    {"type": "int64", "optional": True, "field": "ts_ns"},
    {"type": "string", "optional": False, "field": "schema"},
    {"type": "string", "optional": False, "field": "table"},
    {"type": "int64", "optional": True, "field": "txId"},
    {"type": "int64", "optional": True, "field": "lsn"},
    {"type": "int64", "optional": True, "field": "xmin"},
]


def envelope_schema(tbl: CdcTable, enc: Encoding) -> dict:
    """The Kafka Connect JsonConverter schema of a Debezium PostgreSQL envelope for a table."""
    pk = tbl.primary_key
    value_fields = [_field_schema(c, k, enc, c != pk) for c, k in tbl.columns.items()]
    value = {
        "type": "struct",
        "fields": value_fields,
        "optional": True,
        "name": f"{tbl.topic}.Value",
    }
    return {
        "type": "struct",
        "fields": [
            {**value, "field": "before"},
            {**value, "field": "after"},
            {
                "type": "struct",
                "fields": _SOURCE_FIELDS,
                "optional": False,
                "name": "io.debezium.connector.postgresql.Source",
                "field": "source",
            },
            {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": False, "field": "id"},
                    {"type": "int64", "optional": False, "field": "total_order"},
                    {"type": "int64", "optional": False, "field": "data_collection_order"},
                ],
                "optional": True,
                "name": "event.block",
                "version": 1,
                "field": "transaction",
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            {"type": "int64", "optional": True, "field": "ts_us"},
            {"type": "int64", "optional": True, "field": "ts_ns"},
        ],
        "optional": False,
        "name": f"{tbl.topic}.Envelope",
        "version": 2,
    }


@dataclass
class CdcWriter:
    """Encodes changes and appends them to the topic files with partitions and offsets."""

    out_dir: Path
    seed: int
    partitions: int = 3
    wrapped_rate: float = 0.2
    mixed_encodings: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    dead_letters: list[tuple[str, object]] = field(default_factory=list)
    _files: dict[str, HashedWriter] = field(default_factory=dict)
    _offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    _schemas: dict[tuple, str] = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed * 7 + 3)
        (self.out_dir / "cdc").mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "cdc" / "connectors.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(CONNECTORS, indent=2, sort_keys=True) + "\n")
        for tbl in CDC_TABLES:  # every topic file exists, in a fixed order
            self._file(tbl.topic)

    # -- building changes ------------------------------------------------------------------------
    def change(
        self,
        prefix: str,
        name: str,
        op: str,
        after: dict | None,
        at: datetime,
        before: dict | None = None,
        snapshot: str = "false",
    ) -> Change:
        """A committed change; its lsn follows the commit time (then a sequence number)."""
        self._seq += 1
        lsn = ms(at) * 1024 + self._seq % 1024
        return Change(table(prefix, name), op, before, after, at, lsn, 700000 + self._seq, snapshot)

    # -- writing ---------------------------------------------------------------------------------
    def _file(self, topic: str) -> HashedWriter:
        w = self._files.get(topic)
        if w is None:
            w = self._files[topic] = HashedWriter(self.out_dir / "cdc" / f"{topic}.ndjson")
        return w

    def _encoding(self, prefix: str) -> Encoding:
        default = CONNECTORS[prefix]["decimal.handling.mode"]
        if not self.mixed_encodings or self.rng.random() >= self.wrapped_rate:
            return Encoding(False, default, "micro")
        mode = self.rng.choice(("precise", "string", "double", "variable"))
        return Encoding(True, mode, self.rng.choice(("micro", "milli")))

    def envelope(self, ch: Change, enc: Encoding) -> dict:
        tbl = ch.table
        t_ms = ms(ch.at)
        t_us = micros(ch.at)
        source = {
            "version": DEBEZIUM_VERSION,
            "connector": "postgresql",
            "name": tbl.prefix,
            "ts_ms": t_ms,
            "snapshot": ch.snapshot,
            "db": DB_NAMES[tbl.prefix],
            "sequence": f'["{ch.lsn - 512}","{ch.lsn}"]',
            "ts_us": t_us,
            "ts_ns": t_us * 1000,
            "schema": "public",
            "table": tbl.table,
            "txId": ch.tx_id,
            "lsn": ch.lsn,
            "xmin": None,
        }
        lag = 40 + ch.lsn % 900
        return {
            # REPLICA IDENTITY FULL on account_invoice only: elsewhere an update has no `before`
            "before": encode_row(tbl, ch.before, enc)
            if ch.op != "u" or tbl.table in FULL_IDENTITY
            else None,
            "after": encode_row(tbl, ch.after, enc),
            "source": source,
            "transaction": None,
            "op": ch.op,
            "ts_ms": t_ms + lag,
            "ts_us": (t_ms + lag) * 1000,
            "ts_ns": (t_ms + lag) * 1_000_000,
        }

    def value_json(self, ch: Change, enc: Encoding | None = None, mutate=None) -> str:
        enc = enc or self._encoding(ch.table.prefix)
        env = self.envelope(ch, enc)
        if mutate is not None:
            mutate(env)
        payload = compact(env)
        if not enc.wrapped:
            return payload
        skey = (ch.table.topic, enc.decimal_mode, enc.time_mode)
        schema = self._schemas.get(skey)
        if schema is None:
            schema = self._schemas[skey] = compact(envelope_schema(ch.table, enc))
        return '{"schema":' + schema + ',"payload":' + payload + "}"

    def _append(self, topic: str, key: dict, value_text: str) -> tuple[int, int]:
        kj = key_json(key)
        part = partition_for(kj.encode(), self.partitions)
        off = self._offsets.get((topic, part), 0)
        self._offsets[(topic, part)] = off + 1
        line = (
            f'{{"topic":"{topic}","partition":{part},"offset":{off},"key":{kj},'
            f'"value":{value_text}}}'
        )
        self._file(topic).write_line(line)
        self.counts[topic] = self.counts.get(topic, 0) + 1
        return part, off

    def write(self, ch: Change) -> None:
        self._append(ch.table.topic, ch.key, self.value_json(ch))

    def write_tombstone(self, ch: Change) -> None:
        self._append(ch.table.topic, ch.key, "null")

    def write_malformed(self, ch: Change, kind: str) -> None:
        """A corrupted copy of a real change: it must be dead-lettered (and changes nothing)."""
        topic = ch.table.topic
        if kind == "not_json_line":
            w = self._file(topic)
            text = self.value_json(
                ch, Encoding(False, CONNECTORS[ch.table.prefix]["decimal.handling.mode"])
            )
            line = f'{{"topic":"{topic}","partition":{0},"offset":' + text[: len(text) // 2]
            w.write_line(line)
            self.dead_letters.append(("cdc", (w, w.lines)))
            return
        enc = Encoding(False, CONNECTORS[ch.table.prefix]["decimal.handling.mode"])
        if kind == "bad_json_value":
            raw = self.value_json(ch, enc)
            value_text = json.dumps(raw[: len(raw) * 2 // 3])
        elif kind == "unknown_op":
            value_text = self.value_json(ch, enc, lambda env: env.update(op="x"))
        elif kind == "missing_op":
            value_text = self.value_json(ch, enc, lambda env: env.pop("op"))
        elif kind == "bad_number":

            def _bad(env, tbl=ch.table):
                col = next(c for c, k in tbl.columns.items() if k.startswith("decimal("))
                env["after"][col] = "two" if enc.decimal_mode == "string" else "%%not-base64%%"

            value_text = self.value_json(ch, enc, _bad)
        elif kind == "wrong_type":
            pk = ch.table.primary_key
            value_text = self.value_json(
                ch, enc, lambda env: env["after"].update({pk: f"#{env['after'][pk]}"})
            )
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
        part, off = self._append(topic, ch.key, value_text)
        self.dead_letters.append(("cdc", f"{topic}:{part}:{off}"))

    def close(self) -> None:
        for w in self._files.values():
            w.close()

    def resolved_dead_letters(self) -> list[tuple[str, str]]:
        out = []
        for source, pos in self.dead_letters:
            if isinstance(pos, tuple):
                w, line = pos
                pos = f"{w.sha256}:{line}"
            out.append((source, pos))
        return out


def topics() -> list[str]:
    return sorted(CDC_BY_TOPIC)
