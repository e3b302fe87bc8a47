"""Batch pull of the ERP over JSON-RPC into the raw CDC tables (DESIGN §3, §8.2).

Each Tryton model is read with `search_read` by `write_date` watermark and lands in the same raw
table, in the same shape, as its Debezium topic (`raw.erp_<table>` of `contracts.py`), so staging
does not care which way a row came:

- `_op` is `r` (a snapshot read), `_topic` the Debezium topic name (`erp.public.sale_sale`),
  `_partition` is -1 (no Kafka partition: a pulled row) and `_offset` a per-table sequence
  continuing the largest pulled offset of that table; `_source_lsn` is null, `_source_ts_ms` and
  `_changed_at` are the record's version time (`write_date`, or `create_date` if never written),
  so the contract's order of changes (lsn, then ts_ms, then offset) also holds for pulled rows;
  `_key` is `{"id": <id>}`.
- Tryton's field values are mapped onto the contract columns: many2one fields arrive as ids,
  reference fields (`origin`, `shipment`) as `model,id` strings, `total_amount_cache` is read from
  the always-computed `total_amount`. Fields the contract does not name (`create_date`,
  `write_date` of tables whose contract lacks them, `active`) go to `_extra`.
- The ledger is `meta.erp_pull_ledger`, keyed by (model, id, version time): the rows and their
  ledger entries are written in one transaction, so a re-pull lands nothing, and a changed record
  (new `write_date`) lands once more.
- The watermark per model (`meta.erp_pull_watermarks`) is the largest version time seen; it
  advances only after the whole model was pulled. The next pull asks for records written at or
  after `watermark - overlap` (a transaction committing late can carry an older `write_date`); the
  ledger drops what was already landed.
- A pull cannot see deletions (Tryton keeps no tombstones): rows deleted in the ERP stay in raw
  until CDC reports them; this is the documented limit of the batch path (DESIGN §8.2).
- A record whose values do not fit its contract (a wrong type, more decimals than the column's
  scale) goes to `meta.dead_letters` (source `erp_pull`, position `model:id:version`); the batch
  goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.lib.coltypes import arrow_schema
from pipelines.lib.contracts import CDC_META_COLUMNS, CDC_TABLES, CdcTable
from pipelines.lib.erp.base import ErpAdapter
from pipelines.lib.migrations import migrate
from pipelines.lib.warehouse import DeadLetter, transaction, utcnow, write_dead_letters

DEAD_LETTER_SOURCE = "erp_pull"
PULL_PARTITION = -1
DEFAULT_OVERLAP = timedelta(minutes=5)


@dataclass(frozen=True)
class PullSpec:
    """How one Tryton model maps onto its raw CDC table."""

    model: str
    table: str  # CdcTable.table, e.g. sale_sale
    rename: Mapping[str, str] = field(default_factory=dict)  # contract column -> Tryton field
    extra: tuple[str, ...] = ()  # Tryton fields kept in _extra

    @property
    def contract(self) -> CdcTable:
        return _CDC_BY_TABLE[self.table]

    def field_for(self, column: str) -> str:
        return self.rename.get(column, column)

    @property
    def fields(self) -> list[str]:
        wanted = [self.field_for(c) for c in self.contract.columns if c != "id"]
        return list(dict.fromkeys([*wanted, *self.extra, "create_date", "write_date"]))


_CDC_BY_TABLE = {t.table: t for t in CDC_TABLES if t.prefix == "erp"}

PULL_SPECS: tuple[PullSpec, ...] = (
    PullSpec("sale.sale", "sale_sale"),
    PullSpec("sale.line", "sale_line"),
    PullSpec("account.invoice", "account_invoice", rename={"total_amount_cache": "total_amount"}),
    PullSpec("account.invoice.line", "account_invoice_line"),
    PullSpec("stock.move", "stock_move"),
    PullSpec("stock.location", "stock_location", extra=("active",)),
    PullSpec("stock.shipment.out.return", "stock_shipment_out_return"),
    PullSpec("product.product", "product_product", extra=("active",)),
    PullSpec("currency.currency", "currency_currency", extra=("active",)),
    PullSpec("party.party", "party_party", extra=("active",)),
)
PULL_MODELS: tuple[str, ...] = tuple(s.model for s in PULL_SPECS)
_SPEC_BY_MODEL = {s.model: s for s in PULL_SPECS}


@dataclass
class ModelPull:
    """What one model's pull did."""

    model: str
    raw_table: str
    since: datetime | None
    pulled: int = 0  # records the ERP returned
    landed: int = 0  # new versions landed in raw
    dead_letters: int = 0
    watermark: datetime | None = None


@dataclass
class PullSummary:
    models: list[ModelPull]

    @property
    def pulled(self) -> int:
        return sum(m.pulled for m in self.models)

    @property
    def landed(self) -> int:
        return sum(m.landed for m in self.models)

    @property
    def dead_letters(self) -> int:
        return sum(m.dead_letters for m in self.models)

    def by_model(self) -> dict[str, ModelPull]:
        return {m.model: m for m in self.models}


def ensure_pull_tables(con: duckdb.DuckDBPyConnection) -> None:
    migrate(con)


def pull_erp(
    con: duckdb.DuckDBPyConnection,
    adapter: ErpAdapter,
    *,
    models: Iterable[str] | None = None,
    batch_size: int = 500,
    overlap: timedelta = DEFAULT_OVERLAP,
    full: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> PullSummary:
    """Pull `models` (default: all of `PULL_MODELS`) from the ERP into raw.erp_*.

    `con` is a writer's connection to the warehouse (`warehouse.connect`), whose raw tables exist.
    `full` ignores the watermarks (a backfill; the ledger still keeps it idempotent).
    `progress(model, rows)` is called after each landed page.
    """
    ensure_pull_tables(con)
    chosen = list(models) if models is not None else list(PULL_MODELS)
    unknown = [m for m in chosen if m not in _SPEC_BY_MODEL]
    if unknown:
        raise ValueError(f"cannot pull {unknown}: known models are {list(PULL_MODELS)}")
    summary = PullSummary([])
    for model in chosen:
        summary.models.append(
            _pull_model(con, adapter, _SPEC_BY_MODEL[model], batch_size, overlap, full, progress)
        )
    return summary


def _pull_model(
    con: duckdb.DuckDBPyConnection,
    adapter: ErpAdapter,
    spec: PullSpec,
    batch_size: int,
    overlap: timedelta,
    full: bool,
    progress: Callable[[str, int], None] | None,
) -> ModelPull:
    rows = con.execute(
        "select watermark from meta.erp_pull_watermarks where model = ?", [spec.model]
    ).fetchall()  # fetch to the end: DuckDB 2 blocks the connection on an unfinished result
    watermark = rows[0][0] if rows else None
    since = None if full or watermark is None else watermark - overlap
    result = ModelPull(spec.model, spec.contract.raw_table, since, watermark=watermark)
    page: list[Mapping[str, Any]] = []
    for record in adapter.pull(spec.model, since, spec.fields, batch_size=batch_size):
        page.append(record)
        if len(page) >= batch_size:
            _land_page(con, spec, page, result)
            page = []
            if progress:
                progress(spec.model, result.pulled)
    if page:
        _land_page(con, spec, page, result)
        if progress:
            progress(spec.model, result.pulled)
    with transaction(con):
        con.execute(
            """
            insert into meta.erp_pull_watermarks values (?, ?, ?, current_timestamp)
            on conflict (model) do update set
                watermark = excluded.watermark,
                rows_landed = rows_landed + excluded.rows_landed,
                last_pull_at = excluded.last_pull_at
            """,
            [spec.model, result.watermark, result.landed],
        )
    return result


def _version(record: Mapping[str, Any]) -> datetime | None:
    value = record.get("write_date") or record.get("create_date")
    return value if isinstance(value, datetime) else None


def _land_page(
    con: duckdb.DuckDBPyConnection,
    spec: PullSpec,
    records: Sequence[Mapping[str, Any]],
    result: ModelPull,
) -> None:
    """Land one page: new versions only, rows and ledger entries in one transaction."""
    result.pulled += len(records)
    contract = spec.contract
    letters: list[DeadLetter] = []
    candidates: list[tuple[int, datetime, dict[str, Any]]] = []
    for record in records:
        record_id, version = record.get("id"), _version(record)
        if not isinstance(record_id, int) or version is None:
            letters.append(
                DeadLetter(
                    DEAD_LETTER_SOURCE,
                    f"{spec.model}:{record_id}:{version}",
                    _json(record),
                    "record without an integer id or a create_date/write_date",
                )
            )
            continue
        version = _naive_utc(version)
        if result.watermark is None or version > result.watermark:
            result.watermark = version
        try:
            values = _contract_values(spec, record)
        except (TypeError, ValueError, InvalidOperation) as exc:
            letters.append(
                DeadLetter(
                    DEAD_LETTER_SOURCE,
                    f"{spec.model}:{record_id}:{version.isoformat()}",
                    _json(record),
                    f"does not fit raw.{contract.raw_table}: {exc}",
                )
            )
            continue
        candidates.append((record_id, version, values))
    with transaction(con):
        result.dead_letters += write_dead_letters(con, letters)
        if not candidates:
            return
        seen = _already_landed(con, spec.model, {c[0] for c in candidates})
        fresh: dict[tuple[int, datetime], dict[str, Any]] = {}
        for record_id, version, values in candidates:
            if (record_id, version) not in seen:
                fresh.setdefault((record_id, version), values)
        if not fresh:
            return
        next_offset = con.execute(
            f"select coalesce(max(_offset), -1) + 1 from raw.{contract.raw_table} "
            "where _partition = ?",
            [PULL_PARTITION],
        ).fetchall()[0][0]
        now = utcnow()
        rows: list[dict[str, Any]] = []
        ledger: list[tuple[Any, ...]] = []
        for offset, ((record_id, version), values) in enumerate(
            sorted(fresh.items(), key=lambda item: (item[0][1], item[0][0])), start=next_offset
        ):
            changed_at = version.replace(tzinfo=UTC)
            rows.append(
                {
                    "_topic": contract.topic,
                    "_partition": PULL_PARTITION,
                    "_offset": offset,
                    "_op": "r",
                    "_is_tombstone": False,
                    "_source_lsn": None,
                    "_source_ts_ms": int(changed_at.timestamp() * 1000),
                    "_source_tx_id": None,
                    "_changed_at": changed_at,
                    "_ingested_at": now,
                    "_key": json.dumps({contract.primary_key: record_id}),
                    **values,
                }
            )
            ledger.append((spec.model, record_id, version, contract.raw_table, offset))
        # Arrow, not executemany: DuckDB's executemany costs milliseconds per row
        _insert_arrow(
            con, f"raw.{contract.raw_table}", pa.Table.from_pylist(rows, raw_schema(contract))
        )
        _insert_arrow(
            con,
            "meta.erp_pull_ledger",
            pa.Table.from_pylist(
                [dict(zip(_LEDGER_SCHEMA.names, (*entry, now), strict=True)) for entry in ledger],
                _LEDGER_SCHEMA,
            ),
        )
        result.landed += len(rows)


# meta.erp_pull_ledger (migrations.py), in its column order
_LEDGER_SCHEMA = arrow_schema(
    {
        "model": "varchar",
        "record_id": "bigint",
        "version_at": "timestamp",
        "raw_table": "varchar",
        "offset": "bigint",
        "pulled_at": "timestamptz",
    }
)


def _insert_arrow(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    con.register("_erp_pull_batch", data)
    try:
        con.execute(f"insert into {table} by name from _erp_pull_batch")
    finally:
        con.unregister("_erp_pull_batch")


def _already_landed(
    con: duckdb.DuckDBPyConnection, model: str, ids: set[int]
) -> set[tuple[int, datetime]]:
    if not ids:
        return set()
    found = con.execute(
        "select record_id, version_at from meta.erp_pull_ledger "
        "where model = ? and list_contains(?, record_id)",
        [model, sorted(ids)],
    ).fetchall()
    return {(record_id, version) for record_id, version in found}


def _contract_values(spec: PullSpec, record: Mapping[str, Any]) -> dict[str, Any]:
    """Tryton's values as the contract's columns, plus `_extra` (JSON)."""
    contract = spec.contract
    values: dict[str, Any] = {}
    used = {"id"}
    for column, kind in contract.columns.items():
        source = "id" if column == "id" else spec.field_for(column)
        used.add(source)
        try:
            values[column] = _convert(record.get(source), kind)
        except (TypeError, ValueError, InvalidOperation) as exc:
            raise ValueError(f"column {column} ({kind}) from field {source}: {exc}") from None
    extra = {k: v for k, v in record.items() if k not in used}
    values["_extra"] = _json(extra) if extra else None
    return values


def _convert(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "bigint" or kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an id, got {value!r}")
        return value
    if kind == "double":
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if kind.startswith("decimal("):
        scale = int(kind[len("decimal(") : -1].split(",")[1])
        if isinstance(value, float | bool):
            raise TypeError(f"expected an exact decimal, got {value!r}")
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        exact = number.quantize(Decimal(1).scaleb(-scale))
        if exact != number:
            raise ValueError(f"{value} has more than {scale} decimals")
        return exact
    if kind == "date":
        if isinstance(value, datetime) or not isinstance(value, date):
            raise TypeError(f"expected a date, got {value!r}")
        return value
    if kind == "timestamp":
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {value!r}")
        return _naive_utc(value)
    if kind == "varchar":
        if isinstance(value, str):
            # an empty reference field comes back as 'model,-1' or ''
            return None if value == "" or value.endswith(",-1") else value
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return str(value)
        raise TypeError(f"expected text, got {value!r}")
    raise TypeError(f"no conversion to {kind}")


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime | date):
            return obj.isoformat()
        if isinstance(obj, Decimal):
            return str(obj)
        if isinstance(obj, bytes):
            return obj.decode("utf-8", "replace")
        return repr(obj)

    return json.dumps(value, default=default, sort_keys=True)


def raw_schema(contract: CdcTable) -> pa.Schema:
    """The Arrow schema of a pulled page: the raw table's columns, with DuckDB's types."""
    return arrow_schema({**CDC_META_COLUMNS, **contract.columns})
