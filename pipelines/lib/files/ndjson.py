"""NDJSON readers: returns SaaS webhook deliveries (DESIGN §2.4) and Shopify refunds (§2.5).

One JSON object per line. Each line is converted against the contract's column types (nested
STRUCT lists included); a line that is not JSON, not an object, misses a required field or holds a
value of the wrong type goes to the dead letters with the reason, and the rest of the file lands.
Rows are collected in column lists and inserted as one Arrow table per batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from pipelines.lib.contracts import FILE_META_COLUMNS, FileSource
from pipelines.lib.files.types import Spec, arrow_schema, parse_type
from pipelines.lib.files.values import Problems, _type_name, convert, dumps
from pipelines.lib.warehouse import DeadLetter

# Webhook contract columns that live inside the delivery's `payload` (column -> payload key).
WEBHOOK_ENVELOPE = ("webhook_id", "topic", "delivered_at")
WEBHOOK_PAYLOAD_KEYS = {"return_id": "id"}


def _loads(line: bytes) -> Any:
    return json.loads(line, parse_float=Decimal)


class RowConverter:
    """Turns one parsed JSON object into the contract's column values (or reasons to refuse it)."""

    def __init__(self, fs: FileSource) -> None:
        self.fs = fs
        self.specs: dict[str, Spec] = {name: parse_type(kind) for name, kind in fs.columns.items()}
        self.convert: Callable[[dict, Problems], tuple[dict[str, Any], dict[str, Any]]] = (
            self._webhook if fs.raw_table == "returns_saas_webhooks" else self._flat
        )

    def required_path(self, column: str) -> str:
        if self.fs.raw_table == "returns_saas_webhooks" and column not in WEBHOOK_ENVELOPE:
            return f"payload.{WEBHOOK_PAYLOAD_KEYS.get(column, column)}"
        return column

    def _flat(self, obj: dict, problems: Problems) -> tuple[dict[str, Any], dict[str, Any]]:
        row = {name: convert(obj.get(name), s, name, problems) for name, s in self.specs.items()}
        extra = {k: v for k, v in obj.items() if k not in self.specs}
        present = {name: obj.get(name) is not None for name in self.specs}
        self._required(row, present, problems)
        extra.update(problems.extra)
        return row, extra

    def _webhook(self, obj: dict, problems: Problems) -> tuple[dict[str, Any], dict[str, Any]]:
        row: dict[str, Any] = {}
        present: dict[str, bool] = {}
        for name in WEBHOOK_ENVELOPE:
            row[name] = convert(obj.get(name), self.specs[name], name, problems)
            present[name] = obj.get(name) is not None
        payload = obj.get("payload")
        if payload is not None and not isinstance(payload, dict):
            problems.errors.append(
                f"wrong type in 'payload': expected an object, got {_type_name(payload)}"
            )
            payload = None
        payload = payload or {}
        for name, spec in self.specs.items():
            if name in WEBHOOK_ENVELOPE:
                continue
            if name == "payload":
                row[name] = dumps(obj["payload"]) if payload else None
                present[name] = bool(payload)
                continue
            key = WEBHOOK_PAYLOAD_KEYS.get(name, name)
            # the payload is stored whole, so its unknown fields are not copied to _extra
            row[name] = convert(payload.get(key), spec, f"payload.{key}", problems, False)
            present[name] = payload.get(key) is not None
        self._required(row, present, problems)
        known = {*WEBHOOK_ENVELOPE, "payload"}
        return row, {k: v for k, v in obj.items() if k not in known}

    def _required(self, row: dict, present: dict[str, bool], problems: Problems) -> None:
        for name in self.fs.required:
            if row.get(name) is None and not present.get(name):
                problems.errors.append(f"missing required field {self.required_path(name)!r}")


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
) -> tuple[int, int]:
    """Read `path` line by line, insert good rows in Arrow batches; returns (rows, dead letters)."""
    converter = RowConverter(fs)
    schema = arrow_schema({**FILE_META_COLUMNS, **fs.columns})
    names = schema.names
    columns: dict[str, list] = {name: [] for name in names}
    dead: list[DeadLetter] = []
    rows = pending = buried = 0

    def flush() -> None:
        nonlocal pending, buried
        if pending:
            insert(pa.Table.from_pydict(columns, schema=schema))
            for values in columns.values():
                values.clear()
            pending = 0
        if dead:
            buried += bury(dead)
            dead.clear()

    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            error = None
            try:
                obj = _loads(line)
            except (ValueError, RecursionError) as exc:
                error = f"bad JSON: {exc}"
            else:
                if not isinstance(obj, dict):
                    error = f"wrong type: the line is {_type_name(obj)}, expected a JSON object"
            if error is None:
                problems = Problems()
                row, extra = converter.convert(obj, problems)
                if problems.errors:
                    error = "; ".join(problems.errors)
            if error is not None:
                raw = line.decode("utf-8", errors="replace").rstrip("\r\n")
                dead.append(DeadLetter(fs.source, f"{sha256}:{number}", raw, error))
                if len(dead) >= batch_rows:
                    flush()
                continue
            row["_file"] = rel
            row["_file_sha256"] = sha256
            row["_row_number"] = number
            row["_ingested_at"] = ingested_at
            row["_extra"] = dumps(extra) if extra else None
            for name in names:
                columns[name].append(row[name])
            rows += 1
            pending += 1
            if pending >= batch_rows:
                flush()
    flush()
    return rows, buried
