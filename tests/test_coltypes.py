"""One DuckDB -> Arrow type map (`pipelines/lib/coltypes.py`) for every writer of raw tables.

For every raw table of the contracts, the Arrow schema each landing path builds is the schema
DuckDB reports for the created table, so an append never casts a column by accident:
- NDJSON file readers and the ERP pull: exactly DuckDB's schema, in its column order;
- CDC landing (`land.decode_batch`, Kafka and CDC files): DuckDB's schema without `_ingested_at`
  (one value per batch, set in SQL) and with `_changed_at` in milliseconds (the decoder's unit,
  widened to microseconds by DuckDB on insert).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.lib import warehouse
from pipelines.lib.cdc.land import KafkaRecord, decode_batch
from pipelines.lib.coltypes import arrow_schema, arrow_type, decimal_type, parse_type
from pipelines.lib.contracts import (
    CDC_TABLES,
    FILE_META_COLUMNS,
    FILE_SOURCES,
    all_raw_tables,
)
from pipelines.lib.erp import pull

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    con = warehouse.connect(tmp_path_factory.mktemp("coltypes") / "warehouse.duckdb")
    yield con
    con.close()


def _duckdb_schema(con, table: str) -> pa.Schema:
    return con.sql(f"select * from {table} limit 0").to_arrow_table().schema


def test_every_raw_table_is_covered():
    tables = {t.raw_table for t in CDC_TABLES} | {f.raw_table for f in FILE_SOURCES}
    assert tables == set(all_raw_tables())


@pytest.mark.parametrize("source", FILE_SOURCES, ids=lambda f: f.raw_table)
def test_file_readers_build_duckdbs_schema(con, source):
    built = arrow_schema({**FILE_META_COLUMNS, **source.columns})  # as files/ndjson.py does
    assert built == _duckdb_schema(con, f"raw.{source.raw_table}")


@pytest.mark.parametrize("table", CDC_TABLES, ids=lambda t: t.raw_table)
def test_erp_pull_builds_duckdbs_schema(con, table):
    assert pull.raw_schema(table) == _duckdb_schema(con, f"raw.{table.raw_table}")


@pytest.mark.parametrize("table", CDC_TABLES, ids=lambda t: t.raw_table)
def test_cdc_landing_builds_duckdbs_schema_but_ingested_at_and_changed_at_in_ms(con, table):
    key = json.dumps({table.primary_key: 1}).encode()
    after = KafkaRecord(table.topic, 0, 0, key, json.dumps({"op": "c", "after": {}}).encode())
    tombstone = KafkaRecord(table.topic, 0, 1, key, None)
    decoded = decode_batch([after, tombstone], {})
    assert decoded.letters == []
    built = decoded.tables[table.raw_table].schema
    duck = _duckdb_schema(con, f"raw.{table.raw_table}")
    expected = pa.schema(
        [
            pa.field(f.name, pa.timestamp("ms", tz="UTC")) if f.name == "_changed_at" else f
            for f in duck
            if f.name != "_ingested_at"
        ]
    )
    assert built == expected


def test_erp_pull_ledger_schema_is_duckdbs(con):
    assert _duckdb_schema(con, "meta.erp_pull_ledger") == pull._LEDGER_SCHEMA


def test_nested_and_scalar_type_names():
    assert arrow_type("struct(id bigint, price decimal(18,4))[]") == pa.list_(
        pa.struct([("id", pa.int64()), ("price", pa.decimal128(18, 4))])
    )
    assert arrow_type("timestamp") == pa.timestamp("us")
    assert arrow_type("json") == pa.string()
    assert decimal_type("decimal(12, 3)") == (12, 3) and decimal_type("double") is None
    assert parse_type("DECIMAL(5,2)").scale == 2
    with pytest.raises(ValueError, match="unsupported DuckDB type"):
        arrow_type("hugeint")


def test_no_other_type_map_in_the_product():
    """The map is written once: no other module builds decimals or maps DuckDB names to Arrow."""
    mapping = re.compile(r"""["'](bigint|varchar|timestamptz|integer)["']\s*:\s*pa\.""")
    offenders = []
    for folder in ("pipelines", "assets", "sensors"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "coltypes.py":
                continue
            text = path.read_text(encoding="utf-8")
            if "pa.decimal128(" in text or mapping.search(text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
