"""Source contracts (DESIGN §2) and the raw tables they land in.

This module is the single source of truth for raw table shapes: the CDC decoder takes decimal
scales for bare envelopes from here, the landing code creates raw tables from here, and
`dbt_project/models/staging/_sources.yml` declares the same tables (a test checks they agree).

Types are DuckDB type names. Every raw table also has the metadata columns of its kind
(`CDC_META_COLUMNS` or `FILE_META_COLUMNS`) in front of the contract columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# -- change streams (DESIGN §2.1-2.3) ------------------------------------------------------------

# Metadata columns of every raw CDC table, in front of the table's own columns.
CDC_META_COLUMNS: dict[str, str] = {
    "_topic": "varchar",  # Kafka topic, e.g. erp.public.sale_sale
    "_partition": "integer",
    "_offset": "bigint",  # (_topic, _partition, _offset) is the position, unique per table
    "_op": "varchar",  # c, u, d, r, t (tombstones are stored as op 'd' with _is_tombstone)
    "_is_tombstone": "boolean",
    "_source_lsn": "bigint",  # ordering of changes for one row: lsn, then ts_ms, then offset
    "_source_ts_ms": "bigint",
    "_source_tx_id": "bigint",
    "_changed_at": "timestamptz",  # source.ts_ms as a UTC time
    "_ingested_at": "timestamptz",
    "_key": "json",  # the record key as JSON, e.g. {"id": 42}
    "_extra": "json",  # columns of `after` that the contract does not name (vendors add columns)
}


@dataclass(frozen=True)
class CdcTable:
    prefix: str  # topic prefix / source system: erp or wms
    table: str  # the source table's own name
    columns: dict[str, str]  # contract columns, primary key first

    @property
    def topic(self) -> str:
        return f"{self.prefix}.public.{self.table}"

    @property
    def raw_table(self) -> str:
        return f"{self.prefix}_{self.table}"

    @property
    def primary_key(self) -> str:
        return next(iter(self.columns))

    def scale(self, column: str) -> int | None:
        """Decimal scale of a column (needed to decode bare `precise` envelopes)."""
        kind = self.columns.get(column, "")
        if kind.startswith("decimal("):
            return int(kind[len("decimal(") : -1].split(",")[1])
        return None


_TS = "timestamp"  # timestamp without time zone, UTC (Debezium MicroTimestamp)

# A few columns per line read better than one per line: formatting is off for the tables.
# fmt: off
CDC_TABLES: tuple[CdcTable, ...] = (
    # ERP: Tryton's own tables (DESIGN §2.2, §8)
    CdcTable("erp", "sale_sale", {
        "id": "bigint", "number": "varchar", "reference": "varchar", "party": "bigint",
        "currency": "bigint", "warehouse": "bigint", "sale_date": "date", "state": "varchar",
        "origin": "varchar", "create_date": _TS, "write_date": _TS,
    }),
    CdcTable("erp", "sale_line", {
        "id": "bigint", "sale": "bigint", "product": "bigint", "quantity": "double",
        "unit_price": "decimal(16,4)", "description": "varchar",
    }),
    CdcTable("erp", "account_invoice", {
        "id": "bigint", "number": "varchar", "type": "varchar", "party": "bigint",
        "currency": "bigint", "invoice_date": "date", "state": "varchar", "reference": "varchar",
        "description": "varchar", "total_amount_cache": "decimal(16,2)", "create_date": _TS,
        "write_date": _TS,
    }),
    CdcTable("erp", "account_invoice_line", {
        "id": "bigint", "invoice": "bigint", "product": "bigint", "quantity": "double",
        "unit_price": "decimal(16,4)", "origin": "varchar",
    }),
    CdcTable("erp", "stock_move", {
        "id": "bigint", "product": "bigint", "quantity": "double", "from_location": "bigint",
        "to_location": "bigint", "shipment": "varchar", "origin": "varchar", "state": "varchar",
        "effective_date": "date", "create_date": _TS, "write_date": _TS,
    }),
    CdcTable("erp", "stock_location", {
        "id": "bigint", "code": "varchar", "name": "varchar", "type": "varchar",
        "parent": "bigint",
    }),
    CdcTable("erp", "stock_shipment_out_return", {
        "id": "bigint", "number": "varchar", "reference": "varchar", "warehouse": "bigint",
        "state": "varchar", "effective_date": "date",
    }),
    CdcTable("erp", "product_product", {"id": "bigint", "code": "varchar"}),
    CdcTable("erp", "currency_currency", {"id": "bigint", "code": "varchar"}),
    # personal data: name may be stored, never reported
    CdcTable("erp", "party_party", {"id": "bigint", "code": "varchar", "name": "varchar"}),
    # WMS (DESIGN §2.3)
    CdcTable("wms", "receipts", {
        "receipt_id": "bigint", "dc_code": "varchar", "rma_number": "varchar",
        "tracking_number": "varchar", "sku": "varchar", "lot": "varchar", "serial": "varchar",
        "quantity": "decimal(12,3)", "received_at": "timestamptz", "license_plate": "varchar",
    }),
    CdcTable("wms", "inspections", {
        "inspection_id": "bigint", "receipt_id": "bigint", "grade": "varchar",
        "disposition": "varchar", "quantity": "decimal(12,3)", "inspected_at": "timestamptz",
    }),
)

# fmt: on

CDC_BY_TOPIC: dict[str, CdcTable] = {t.topic: t for t in CDC_TABLES}
CDC_PREFIXES: tuple[str, ...] = ("erp", "wms")

# -- file drops (DESIGN §2.4-2.8) ----------------------------------------------------------------

# Metadata columns of every raw file table, in front of the contract columns.
FILE_META_COLUMNS: dict[str, str] = {
    "_file": "varchar",  # path relative to the landing directory
    "_file_sha256": "varchar",  # (_file_sha256, _row_number) is the position
    "_row_number": "bigint",  # 1-based line number (CSV/TSV: counted after the header line)
    "_ingested_at": "timestamptz",
    "_extra": "json",  # fields or columns the contract does not name
}

_MONEY = "decimal(18,4)"  # channel money arrives as decimal strings; never a float

# Nested types for webhook and refund line items (DuckDB STRUCT lists).
RETURNS_SAAS_LINE_ITEM = (
    "struct(line_item_id bigint, provider_line_item_id bigint, sku varchar, quantity integer, "
    f"price {_MONEY}, refund {_MONEY}, return_reason varchar, parent_return_reason varchar)"
)
SHOPIFY_REFUND_LINE_ITEM = (
    "struct(id bigint, line_item_id bigint, quantity integer, restock_type varchar, "
    f"subtotal {_MONEY}, total_tax {_MONEY}, line_item struct(id bigint, sku varchar, "
    f"price {_MONEY}))"
)
SHOPIFY_TRANSACTION = (
    f"struct(id bigint, kind varchar, status varchar, amount {_MONEY}, currency varchar, "
    "gateway varchar)"
)

# Amazon's header, exactly as the report has it, and the snake_case raw column for each.
AMAZON_COLUMNS: dict[str, tuple[str, str]] = {
    "Order ID": ("order_id", "varchar"),
    "Order date": ("order_date", "timestamptz"),
    "Return request date": ("return_request_date", "timestamptz"),
    "Return request status": ("return_request_status", "varchar"),
    "Amazon RMA ID": ("amazon_rma_id", "varchar"),
    "Merchant RMA ID": ("merchant_rma_id", "varchar"),
    "Label type": ("label_type", "varchar"),
    "Label cost": ("label_cost", _MONEY),
    "Currency code": ("currency_code", "varchar"),
    "Return carrier": ("return_carrier", "varchar"),
    "Tracking ID": ("tracking_id", "varchar"),
    "Label to be paid by": ("label_to_be_paid_by", "varchar"),
    "A-to-z claim": ("a_to_z_claim", "varchar"),
    "Is prime": ("is_prime", "varchar"),
    "ASIN": ("asin", "varchar"),
    "Merchant SKU": ("merchant_sku", "varchar"),
    "Item Name": ("item_name", "varchar"),
    "Return quantity": ("return_quantity", "integer"),
    "Return reason": ("return_reason", "varchar"),
    "In policy": ("in_policy", "varchar"),
    "Return type": ("return_type", "varchar"),
    "Resolution": ("resolution", "varchar"),
    "Invoice number": ("invoice_number", "varchar"),
    "Return delivery date": ("return_delivery_date", "timestamptz"),
    "Order Amount": ("order_amount", _MONEY),
    "Order quantity": ("order_quantity", "integer"),
    "SafeT action reason": ("safet_action_reason", "varchar"),
    "SafeT claim id": ("safet_claim_id", "varchar"),
    "SafeT claim state": ("safet_claim_state", "varchar"),
    "SafeT claim creation time": ("safet_claim_creation_time", "timestamptz"),
    "SafeT claim reimbursement amount": ("safet_claim_reimbursement_amount", _MONEY),
    "Refunded Amount": ("refunded_amount", _MONEY),
    "Category": ("category", "varchar"),
}


# Value sets (DESIGN §2.4-2.8) the landing-boundary suites check. Amazon's report spells its
# statuses in words; the set below is the one returnsync's simulator and staging use.
WEBHOOK_TOPICS = ("return.created", "return.updated", "return.closed", "return.cancelled")
RETURN_STATES = ("open", "closed", "cancelled", "expired", "review")
RETURN_OUTCOMES = ("refund", "exchange", "store_credit", "keep_item")
SHOPIFY_TRANSACTION_KINDS = ("authorization", "capture", "sale", "void", "refund", "change")
SHOPIFY_TRANSACTION_STATUSES = ("pending", "failure", "success", "error")
AMAZON_RETURN_REQUEST_STATUSES = (
    "Approved", "Authorized", "Pending", "Closed", "Completed", "Rejected", "Cancelled",
)  # fmt: skip
B2B_STATUSES = ("submitted", "approved", "rejected")
CHANNELS = ("shopify", "amazon", "b2b")


@dataclass(frozen=True)
class Items:
    """A list column whose items the landing-boundary suite checks one by one (its own frame)."""

    column: str  # the list-of-struct column
    frame: str  # the frame's name in validation results
    parent: tuple[str, ...]  # columns of the row shown beside each item (`col` or `col as x`)
    fields: tuple[str, ...]  # item fields selected (`field` or `field as x`)
    value_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    positive: tuple[str, ...] = ()  # fields (by selected name) that must be > 0
    non_negative: tuple[str, ...] = ()  # fields that must be >= 0


@dataclass(frozen=True)
class FileSource:
    """One file source: the one place it is declared (issue 20). Derived from it: the raw table
    and its DDL (`all_raw_tables`), the landing (`pipelines/lib/files`, by format), the
    landing-boundary suite (`expectations/suites.py`), dbt's `models/staging/_sources.yml`
    (written by `python -m pipelines.lib.contracts`), the channel models the unions read
    (`channel`), and the simulator's list of emitters (tests/simulate checks it)."""

    source: str  # ledger / dead-letter source name
    raw_table: str
    pattern: str  # glob under the landing directory: `<folder>/<file glob>.<format>`
    columns: dict[str, str]  # contract columns (after the FILE_META_COLUMNS)
    required: tuple[str, ...]  # a record missing one of these is dead-lettered
    # reference files (versioned by arrival, DESIGN §12): the columns that identify an entry, to
    # count the keys a new version drops
    key: tuple[str, ...] = ()
    # -- the landing-boundary suite (expectations/suites.py): the required columns are not null,
    # and these hold; a failing-row sample shows only the columns named here and the position
    value_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    positive: tuple[str, ...] = ()  # numeric columns that must be > 0
    non_negative: tuple[str, ...] = ()  # numeric columns that must be >= 0
    not_null: tuple[str, ...] = ()  # not null besides `required` (e.g. taken from the file name)
    items: tuple[Items, ...] = ()
    frame: str = ""  # the main frame's name in validation results (default: the raw table)
    # the sales channel whose returns this source carries (its channel models feed the unions in
    # dbt_project/models/intermediate/channels/); "" for a source that carries no channel returns
    channel: str = ""

    @property
    def folder(self) -> str:
        """The landing folder (also the staging folder's name: models/staging/<folder>/)."""
        return self.pattern.partition("/")[0]

    @property
    def format(self) -> str:
        """ndjson, csv or tsv: the landing code picks the parser by it."""
        return self.pattern.rpartition(".")[2].lower()


FORMATS = ("ndjson", "csv", "tsv")  # the parsers pipelines/lib/files has

# fmt: off
FILE_SOURCES: tuple[FileSource, ...] = (
    FileSource(
        "returns_saas", "returns_saas_webhooks", "returns_saas/*.ndjson",
        {
            "webhook_id": "varchar", "topic": "varchar", "delivered_at": "timestamptz",
            "return_id": "bigint", "rma": "varchar", "state": "varchar",
            "created_at": "timestamptz", "updated_at": "timestamptz", "order_id": "bigint",
            "order_name": "varchar", "currency": "varchar", "outcome": "varchar",
            "total_refund": _MONEY, "tracking_number": "varchar",
            "line_items": f"{RETURNS_SAAS_LINE_ITEM}[]",
            "payload": "json",  # the whole payload as delivered (may hold personal data)
        },
        ("webhook_id", "topic", "delivered_at", "return_id", "rma", "state", "updated_at"),
        value_sets={"topic": WEBHOOK_TOPICS, "state": RETURN_STATES, "outcome": RETURN_OUTCOMES},
        non_negative=("total_refund",),
        items=(
            Items("line_items", "line_items", ("rma",), ("line_item_id", "quantity", "price",
                  "refund"), positive=("quantity",), non_negative=("price", "refund")),
        ),
        frame="deliveries",
        channel="shopify",
    ),
    FileSource(
        "shopify", "shopify_refunds", "shopify/*.ndjson",
        {
            "id": "bigint", "order_id": "bigint", "created_at": "timestamptz",
            "processed_at": "timestamptz", "note": "varchar",
            "refund_line_items": f"{SHOPIFY_REFUND_LINE_ITEM}[]",
            "transactions": f"{SHOPIFY_TRANSACTION}[]",
        },
        ("id", "order_id", "created_at"),
        items=(
            Items("refund_line_items", "refund_line_items", ("id as refund_id",),
                  ("id as refund_line_item_id", "line_item_id", "quantity", "subtotal",
                   "total_tax"), positive=("quantity",), non_negative=("subtotal", "total_tax")),
            Items("transactions", "transactions", ("id as refund_id",),
                  ("id as transaction_id", "kind", "status", "amount"),
                  value_sets={"kind": SHOPIFY_TRANSACTION_KINDS,
                              "status": SHOPIFY_TRANSACTION_STATUSES},
                  non_negative=("amount",)),
        ),
        frame="refunds",
    ),
    FileSource(
        "amazon", "amazon_returns", "amazon/returns_*.tsv",
        # _report_date comes from the file name (returns_<YYYY-MM-DD>.tsv): the newest wins
        {"report_date": "date", **{col: kind for col, kind in AMAZON_COLUMNS.values()}},
        ("order_id", "amazon_rma_id", "merchant_sku", "return_quantity"),
        value_sets={"return_request_status": AMAZON_RETURN_REQUEST_STATUSES},
        positive=("return_quantity",),
        non_negative=("refunded_amount", "label_cost", "order_amount"),
        not_null=("report_date",),
        frame="returns",
        channel="amazon",
    ),
    FileSource(
        "b2b", "b2b_credit_requests", "b2b/*.csv",
        {
            "request_id": "varchar", "account_number": "varchar", "po_number": "varchar",
            "erp_order_number": "varchar", "sku": "varchar", "quantity": "decimal(12,3)",
            "unit_price": "decimal(16,4)", "currency": "varchar", "reason_code": "varchar",
            "requested_at": "timestamptz", "status": "varchar", "approved_at": "timestamptz",
        },
        ("request_id", "sku", "quantity", "status"),
        value_sets={"status": B2B_STATUSES},
        positive=("quantity",),
        non_negative=("unit_price",),
        frame="credit_requests",
        channel="b2b",
    ),
    FileSource(
        "reference", "sku_crosswalk", "reference/sku_crosswalk.csv",
        {"channel": "varchar", "channel_sku": "varchar", "erp_product_code": "varchar"},
        ("channel", "channel_sku", "erp_product_code"),
        key=("channel", "channel_sku"),
        value_sets={"channel": CHANNELS},
    ),
    FileSource(
        "reference", "warehouse_crosswalk", "reference/warehouse_crosswalk.csv",
        {"dc_code": "varchar", "erp_warehouse_code": "varchar"},
        ("dc_code", "erp_warehouse_code"),
        key=("dc_code",),
    ),
    FileSource(  # exchange rates to the company currency (DESIGN §11), optional
        "reference", "fx_rates", "reference/fx_rates.csv",
        {"date": "date", "currency": "varchar", "rate_to_company": "decimal(18,8)"},
        ("date", "currency", "rate_to_company"),
        key=("date", "currency"),
        positive=("rate_to_company",),
    ),
)

# fmt: on

FILE_SOURCE_BY_TABLE: dict[str, FileSource] = {f.raw_table: f for f in FILE_SOURCES}


# -- the channel unions (dbt_project/models/intermediate/channels/) ------------------------------

# The shape every channel source maps itself into, per union: the columns in order, with their
# DuckDB types (the one place this list is written). A source with `channel` set has one model per
# union in its own staging folder, `models/staging/<folder>/stg_<folder>__channel_<union>.sql`
# (its statuses, its grouping, its reasons: the channel's own SQL). Generated from here by
# `python -m pipelines.lib.contracts`: `models/staging/_channel_models.yml` (a dbt contract on
# each of those models: dbt refuses to build one whose columns or types differ) and
# `macros/generated/channel_models.sql` (`channel_models(union)` and `channel_columns(union)`,
# which the two `int_channel_*_unioned` models loop over).
CHANNEL_UNIONS: dict[str, dict[str, str]] = {
    # one row per channel return -> int_channel_returns_unioned
    "returns": {
        "channel": "varchar",  # the sales channel (CHANNELS)
        "source_system": "varchar",  # the source's own name (FileSource.source)
        "channel_return_id": "varchar",
        "rma_number": "varchar",
        "rma_normalized": "varchar",  # normalize_rma(...): the return thread's key
        "channel_status": "varchar",
        "base_status": "varchar",  # requested, approved, rejected, closed, cancelled, expired
        "requested_at": "timestamptz",
        "approved_at": "timestamptz",  # start of the stale-return window
        "closed_at": "timestamptz",
        "currency": "varchar",
        "outcome": "varchar",  # refund, exchange, store_credit, keep_item
        "tracking_number": "varchar",
        "tracking_normalized": "varchar",
        "order_ref": "varchar",
        "shopify_order_id": "bigint",
        "source_position": "varchar",
        "source_changed_at": "timestamptz",
    },
    # one row per channel return line -> int_channel_return_lines_unioned (which adds the ERP
    # product through the SKU crosswalk, the keys and the canonical reason)
    "return_lines": {
        "channel": "varchar",
        "source_system": "varchar",
        "rma_normalized": "varchar",
        "channel_sku": "varchar",
        "channel_line_id": "varchar",
        "qty_requested": "decimal(12,3)",
        "unit_price": "decimal(18,4)",
        "currency": "varchar",
        "reason_raw": "varchar",  # the reason as the source gave it
        "mapped_reason": "varchar",  # through the reason_map seed; null when unknown
        "refund_amount": "decimal(18,4)",
        "source_record_id": "varchar",
        "source_position": "varchar",
        "source_changed_at": "timestamptz",
    },
}


def channel_models(union: str) -> list[str]:
    """The channel models a union reads, in registry order: `stg_<folder>__channel_<union>`."""
    if union not in CHANNEL_UNIONS:
        raise KeyError(f"no channel union {union!r} (CHANNEL_UNIONS: {sorted(CHANNEL_UNIONS)})")
    return [f"stg_{f.folder}__channel_{union}" for f in FILE_SOURCES if f.channel]


def raw_ddl(table: str, meta: dict[str, str], columns: dict[str, str]) -> str:
    """`create table if not exists raw.<table>` with the metadata columns first."""
    cols = ",\n    ".join(f'"{name}" {kind}' for name, kind in {**meta, **columns}.items())
    return f"create table if not exists raw.{table} (\n    {cols}\n)"


def all_raw_tables() -> dict[str, str]:
    """Every raw table with its DDL, CDC and files alike."""
    ddl = {t.raw_table: raw_ddl(t.raw_table, CDC_META_COLUMNS, t.columns) for t in CDC_TABLES}
    for f in FILE_SOURCES:
        ddl[f.raw_table] = raw_ddl(f.raw_table, FILE_META_COLUMNS, f.columns)
    return ddl


# -- dbt's sources (models/staging/_sources.yml is written from the registry) --------------------

DBT_SOURCES_PATH = "models/staging/_sources.yml"  # under the dbt project


def dbt_sources_yml() -> str:
    """The text of `models/staging/_sources.yml`: every raw table, with `meta` saying where it
    comes from (kind cdc|file, source, format, channel), so dbt code can select tables by it
    instead of listing them. tests/test_contracts.py fails when the committed file differs."""
    out = [
        "# GENERATED from pipelines/lib/contracts.py by `python -m pipelines.lib.contracts`",
        "# (make sources-yml); do not edit: tests/test_contracts.py fails when it is out of date.",
        "# Raw change logs written by the landing assets.",
        "version: 2",
        "",
        "sources:",
        "  - name: raw",
        "    schema: raw",
        "    description: Append-only change logs, one per source entity, each row with its"
        " position.",
        "    tables:",
    ]

    def table(name: str, description: str, meta: dict[str, str]) -> None:
        out.append(f"      - name: {name}")
        out.append(f"        description: {description}")
        out.append("        config:")
        out.append("          meta:")
        out.extend(f"            {k}: {v}" for k, v in meta.items() if v)

    for t in CDC_TABLES:
        table(
            t.raw_table,
            f"Debezium change events of {t.prefix} table `{t.table}` (topic `{t.topic}`).",
            {"kind": "cdc", "source": t.prefix, "topic": t.topic},
        )
    for f in FILE_SOURCES:
        table(
            f.raw_table,
            f"Rows of `{f.pattern}` file drops ({f.source}).",
            {"kind": "file", "source": f.source, "format": f.format, "channel": f.channel},
        )
    return "\n".join(out) + "\n"


# -- the channel unions' generated files ---------------------------------------------------------

CHANNEL_MODELS_YML_PATH = "models/staging/_channel_models.yml"  # under the dbt project
CHANNEL_MODELS_MACRO_PATH = "macros/generated/channel_models.sql"


def _channel_sources() -> list[FileSource]:
    return [f for f in FILE_SOURCES if f.channel]


def channel_models_yml() -> str:
    """The text of `models/staging/_channel_models.yml`: each channel source's model per union,
    with a dbt contract enforcing the union's columns and types (CHANNEL_UNIONS), so a channel
    model that does not produce exactly them fails its own build, not the union's."""
    out = [
        "# GENERATED from pipelines/lib/contracts.py by `python -m pipelines.lib.contracts`",
        "# (make sources-yml); do not edit: tests/test_contracts.py fails when it is out of date.",
        "# Each channel source's models in the shape of the channel unions (CHANNEL_UNIONS).",
        "version: 2",
        "",
        "models:" if _channel_sources() else "models: []",
    ]
    for f in _channel_sources():
        for union, columns in CHANNEL_UNIONS.items():
            out.append(f"  - name: stg_{f.folder}__channel_{union}")
            out.append(
                f"    description: {f.source}'s channel {union.replace('_', ' ')} ({f.channel}) "
                f"in the shape of int_channel_{union}_unioned."
            )
            out.append("    config:")
            out.append("      contract:")
            out.append("        enforced: true")
            out.append("    columns:")
            for name, kind in columns.items():
                out.append(f"      - name: {name}")
                out.append(f"        data_type: {kind}")
    return "\n".join(out) + "\n"


def channel_models_sql() -> str:
    """The text of `macros/generated/channel_models.sql`: `channel_models(union)` (the models a
    union reads, a static list, so `ref()` in the union's loop resolves when dbt parses) and
    `channel_columns(union)` (the union's columns in order)."""

    def listing(values: dict[str, list[str]]) -> list[str]:
        lines = ["    {%- set found = {"]
        for union, names in values.items():
            lines.append(f"        '{union}': [")
            lines.extend(f"            '{n}'," for n in names)
            lines.append("        ],")
        lines.append("    } -%}")
        lines.append("    {%- if union not in found -%}")
        lines.append(
            '        {{ exceptions.raise_compiler_error("no channel union \'" ~ union ~ "\' '
            '(CHANNEL_UNIONS in pipelines/lib/contracts.py)") }}'
        )
        lines.append("    {%- endif -%}")
        lines.append("    {{ return(found[union]) }}")
        return lines

    out = [
        "{#-",
        "  GENERATED from pipelines/lib/contracts.py by `python -m pipelines.lib.contracts`",
        "  (make sources-yml); do not edit: tests/test_contracts.py fails when it is out of date.",
        "-#}",
        "",
        "{#- The models a channel union reads, in registry order: each channel source's",
        "    `stg_<folder>__channel_<union>` (FileSource.channel). -#}",
        "{% macro channel_models(union) -%}",
        *listing({u: channel_models(u) for u in CHANNEL_UNIONS}),
        "{%- endmacro %}",
        "",
        "",
        "{#- The columns of a channel union, in order (each channel model has exactly these). -#}",
        "{% macro channel_columns(union) -%}",
        *listing({u: list(cols) for u, cols in CHANNEL_UNIONS.items()}),
        "{%- endmacro %}",
    ]
    return "\n".join(out) + "\n"


# Every file written from the registry (path under the dbt project -> its text).
GENERATED = {
    DBT_SOURCES_PATH: dbt_sources_yml,
    CHANNEL_MODELS_YML_PATH: channel_models_yml,
    CHANNEL_MODELS_MACRO_PATH: channel_models_sql,
}


def write_generated(project_dir) -> dict[str, bool]:
    """Write every generated file under `project_dir`; per path, True when it changed."""
    from pathlib import Path

    changed = {}
    for rel, render in GENERATED.items():
        path = Path(project_dir) / rel
        text = render()
        changed[rel] = not (path.exists() and path.read_text(encoding="utf-8") == text)
        if changed[rel]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return changed


if __name__ == "__main__":  # python -m pipelines.lib.contracts [dbt project dir]
    import sys

    from pipelines.settings import DBT_PROJECT_DIR

    target = sys.argv[1] if len(sys.argv) > 1 else DBT_PROJECT_DIR
    for rel, changed in write_generated(target).items():
        print(f"{rel}: {'written' if changed else 'up to date'}")
