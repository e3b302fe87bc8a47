"""NDJSON readers: returns SaaS webhook deliveries (DESIGN §2.4) and Shopify refunds (§2.5).

One JSON object per line. Each line is converted against the contract's column types (nested
STRUCT lists included); a line that is not JSON, not an object, misses a required field or holds a
value of the wrong type goes to the dead letters with the reason, and the rest of the file lands.
Rows are collected in column lists and inserted as one Arrow table per batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from pipelines.lib.contracts import FILE_META_COLUMNS, FileSource
from pipelines.lib.files.fastrow import compile_builder, fast_dumps
from pipelines.lib.files.types import Spec, arrow_schema, parse_type
from pipelines.lib.files.values import Problems, _type_name, compile_converter, dumps
from pipelines.lib.warehouse import DeadLetter

# Webhook contract columns of the delivery envelope; every other column (but `payload`, the whole
# payload as JSON) is a field of the delivery's `payload`, under the same name except these:
WEBHOOK_ENVELOPE = ("webhook_id", "topic", "delivered_at")
WEBHOOK_PAYLOAD_KEYS = {"return_id": "id"}  # column -> payload key


class _Floats:
    """`parse_float` that notes whether the line had a JSON float (then the fast dump is off)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, text: str) -> Decimal:
        self.seen = True
        return Decimal(text)


_fast_dumps = fast_dumps  # orjson (installed with dagster-dbt), ~5x faster than json

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(obj: Any) -> bool:
    """json.loads keeps an escaped unpaired surrogate (`"\\ud800"`), which no UTF-8 text (nor
    Arrow, nor DuckDB) can hold."""
    try:
        json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class RowConverter:
    """Turns one parsed JSON object into the contract's column values (or reasons to refuse it)."""

    def __init__(self, fs: FileSource) -> None:
        self.fs = fs
        self.webhook = fs.raw_table == "returns_saas_webhooks"
        specs: dict[str, Spec] = {name: parse_type(kind) for name, kind in fs.columns.items()}
        self.columns = tuple(specs)
        # (column, key in its object, path, converter); webhook payload fields come from `payload`
        # and, the payload being stored whole, their unknown fields are not copied to _extra
        self.top: list[tuple[str, str, Any, Any]] = []
        self.inner: list[tuple[str, str, Any, Any]] = []
        for name, spec in specs.items():
            if self.webhook and name == "payload":
                continue
            if self.webhook and name not in WEBHOOK_ENVELOPE:
                key = WEBHOOK_PAYLOAD_KEYS.get(name, name)
                self.inner.append((name, key, ("payload", key), compile_converter(spec, False)))
            else:
                self.top.append((name, name, name, compile_converter(spec)))
        envelope = frozenset((*WEBHOOK_ENVELOPE, "payload"))
        self.known = envelope if self.webhook else frozenset(specs)
        where = {name: ("top", key) for name, key, _, _ in self.top}
        where.update({name: ("inner", key) for name, key, _, _ in self.inner})
        where["payload"] = ("top", "payload")
        self.required = [(name, *where[name]) for name in fs.required]

    def required_path(self, column: str) -> str:
        if self.webhook and column not in WEBHOOK_ENVELOPE:
            return f"payload.{WEBHOOK_PAYLOAD_KEYS.get(column, column)}"
        return column

    def convert(
        self, obj: dict, problems: Problems, floats: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        row = {name: conv(obj.get(key), path, problems) for name, key, path, conv in self.top}
        payload: dict = {}
        if self.webhook:
            raw_payload = obj.get("payload")
            if type(raw_payload) is dict:
                payload = raw_payload
            elif raw_payload is not None:
                got = _type_name(raw_payload)
                problems.errors.append(f"wrong type in 'payload': expected an object, got {got}")
            for name, key, path, conv in self.inner:
                row[name] = conv(payload.get(key), path, problems)
            row["payload"] = (dumps if floats else _fast_dumps)(payload) if payload else None
        for name, place, key in self.required:
            if row[name] is None and (obj if place == "top" else payload).get(key) is None:
                problems.errors.append(f"missing required field {self.required_path(name)!r}")
        if self.known.issuperset(obj):
            extra = dict(problems.extra)
        else:
            extra = {k: v for k, v in obj.items() if k not in self.known}
            extra.update(problems.extra)
        return row, extra


def land_ndjson(
    con,
    fs: FileSource,
    path,
    rel: str,
    sha256: str,
    ingested_at,
    insert: Callable[[pa.Table], None],
    bury: Callable[[list[DeadLetter]], int],
    batch_rows: int,
    batch_bytes: int = 1 << 62,
    *,
    fast: bool = True,
) -> tuple[int, int]:
    """Read `path` line by line, insert good rows in Arrow batches (of `batch_rows` rows or
    `batch_bytes` bytes of input, whichever comes first); returns (rows, dead letters).

    Each parsed line goes through the generated builder of `fastrow` first (unless `fast` is
    False) and through `RowConverter`, the reference, when the builder declines it.
    """
    converter = RowConverter(fs)
    builders = (compile_builder(fs), compile_builder(fs, exact_numbers=True)) if fast else None
    schema = arrow_schema({**FILE_META_COLUMNS, **fs.columns})
    good: list[tuple] = []
    dead: list[DeadLetter] = []
    rows = buried = pending_bytes = 0
    columns = tuple(converter.columns)

    def flush() -> None:
        nonlocal rows, buried, pending_bytes
        pending_bytes = 0
        if good:
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(zip(*good, strict=True), schema, strict=True)
            ]
            rows += len(good)
            good.clear()
            insert(pa.Table.from_arrays(arrays, schema=schema))
            del arrays
        if dead:
            buried += bury(dead)
            dead.clear()

    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.isspace():
                continue
            pending_bytes += len(line)
            error = None
            floats = _Floats()
            try:
                obj = json.loads(line, parse_float=floats)
            except (ValueError, RecursionError) as exc:
                error = f"bad JSON: {exc}"
            else:
                if type(obj) is not dict:
                    error = f"wrong type: the line is {_type_name(obj)}, expected a JSON object"
                elif _SURROGATE_ESCAPE.search(line) and _lone_surrogate(obj):
                    error = "bad JSON: a string holds an unpaired UTF-16 surrogate (not storable)"
            if error is None and builders is not None:
                try:
                    built = builders[floats.seen](obj)
                except Exception:  # Slow (or a value it did not expect): the reference decides
                    pass
                else:
                    good.append((rel, sha256, number, ingested_at, *built))
                    if len(good) >= batch_rows or pending_bytes >= batch_bytes:
                        flush()
                    continue
            if error is None:
                problems = Problems()
                row, extra = converter.convert(obj, problems, floats.seen)
                if problems.errors:
                    error = "; ".join(problems.errors)
            if error is not None:
                raw = line.decode("utf-8", errors="replace").rstrip("\r\n")
                dead.append(DeadLetter(fs.source, f"{sha256}:{number}", raw, error))
                if len(dead) >= batch_rows or pending_bytes >= batch_bytes:
                    flush()
                continue
            extra_text = (dumps if floats.seen else _fast_dumps)(extra) if extra else None
            good.append((rel, sha256, number, ingested_at, extra_text, *(row[c] for c in columns)))
            if len(good) >= batch_rows or pending_bytes >= batch_bytes:
                flush()
    flush()
    return rows, buried
