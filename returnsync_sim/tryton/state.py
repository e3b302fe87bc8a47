"""The ERP side of a simulated landscape as the ERP holds it at the end: the current row of every
key of each `erp.public.*` CDC file the simulator wrote (DESIGN §2.2).

The files are decoded by the product's own decoder (bare or schema-wrapped envelopes, every
decimal encoding); changes of a key are ordered as Debezium orders them (source LSN, then
source time, then file order); a delete or tombstone removes the key. Records the decoder
rejects (the simulator's malformed-record noise) are not ERP state and are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.lib.cdc.decode import (
    N_ROW_META,
    DecodeError,
    TableDecoder,
    decimal_mode_for,
    key_object,
    loads,
    to_python,
)
from pipelines.lib.contracts import CDC_BY_TOPIC

ERP_PREFIX = "erp."


def erp_files(landing: Path) -> list[Path]:
    return sorted((Path(landing) / "cdc").glob(f"{ERP_PREFIX}public.*.ndjson"))


def _connectors(landing: Path) -> dict:
    path = Path(landing) / "cdc" / "connectors.json"
    return json.loads(path.read_text()) if path.exists() else {}


def read_erp_state(landing: Path) -> dict[str, dict[int, dict]]:
    """{table: {id: row}} of the ERP tables, current state (deleted keys left out)."""
    connectors = _connectors(landing)
    state: dict[str, dict[int, dict]] = {}
    for path in erp_files(landing):
        topic = path.name[: -len(".ndjson")]
        table = CDC_BY_TOPIC.get(topic)
        if table is None:
            continue
        decoder = TableDecoder(table, decimal_mode_for(topic, connectors))
        changes: list[tuple[tuple, int, dict | None]] = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                try:
                    rec = json.loads(line)
                    key = key_object(rec["key"])
                    value = rec["value"]
                    if isinstance(value, str):
                        value = loads(value, "value")
                    row = decoder.decode(key, value)
                except (DecodeError, ValueError, KeyError, TypeError):
                    continue  # malformed-record noise: a dead letter, never ERP state
                op, tombstone, lsn, ts = row[0], row[1], row[2], row[3]
                if op == "t":
                    continue
                values = {
                    name: to_python(kind, v)
                    for (name, kind), v in zip(table.columns.items(), row[N_ROW_META:], strict=True)
                }
                order = (lsn if lsn is not None else -1, ts if ts is not None else -1, n)
                deleted = tombstone or op == "d"
                changes.append((order, values[table.primary_key], None if deleted else values))
        rows: dict[int, dict] = {}
        for _order, pk, values in sorted(changes, key=lambda c: c[0]):
            if values is None:
                rows.pop(pk, None)
            else:
                rows[pk] = values
        state[table.table] = rows
    return state
