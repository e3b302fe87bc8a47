"""The landing-boundary expectation suites, one per raw file table (DESIGN §3 "Validation").

Each suite validates the rows of the files landed in one run. A suite is made of frames: a SQL
projection of the raw table (line items and transactions are unnested into their own frame) and
the expectations on it. Frames select only keys, positions and the checked columns, never
personal data (payload, customer, names, emails, notes), so a failing-row sample is safe to show.

Rules here guard the landing boundary only: required fields present, codes in their value sets,
quantities and money in range. Cross-source rules (uniqueness per key, relationships) are dbt
tests on staging; a rule is written in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Value sets (DESIGN §2.4-2.8). Amazon's report spells its statuses in words; the set below is the
# one returnsync's simulator and staging use.
WEBHOOK_TOPICS = ("return.created", "return.updated", "return.closed", "return.cancelled")
RETURN_STATES = ("open", "closed", "cancelled", "expired", "review")
RETURN_OUTCOMES = ("refund", "exchange", "store_credit", "keep_item")
SHOPIFY_TRANSACTION_KINDS = ("authorization", "capture", "sale", "void", "refund", "change")
SHOPIFY_TRANSACTION_STATUSES = ("pending", "failure", "success", "error")
AMAZON_RETURN_REQUEST_STATUSES = (
    "Approved",
    "Authorized",
    "Pending",
    "Closed",
    "Completed",
    "Rejected",
    "Cancelled",
)
B2B_STATUSES = ("submitted", "approved", "rejected")
CHANNELS = ("shopify", "amazon", "b2b")

# Columns that may hold personal data: never selected into a frame, never shown in a sample.
PERSONAL_COLUMNS = frozenset(
    {"payload", "customer", "name", "email", "note", "first_name", "last_name", "address", "phone"}
)

# Every frame carries these, so a failing row can be found (file, row) without showing its data.
KEY_COLUMNS = ("_file", "_row_number")


@dataclass(frozen=True)
class Expectation:
    type: str  # Great Expectations expectation class name
    column: str
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    name: str
    sql: str  # selects from raw.<table> aliased `r`; `{batch}` is the landed-files filter
    expectations: tuple[Expectation, ...]


def not_null(*columns: str) -> tuple[Expectation, ...]:
    return tuple(Expectation("ExpectColumnValuesToNotBeNull", c) for c in columns)


def in_set(column: str, values: tuple[str, ...]) -> Expectation:
    return Expectation("ExpectColumnValuesToBeInSet", column, {"value_set": list(values)})


def positive(column: str) -> Expectation:
    return Expectation(
        "ExpectColumnValuesToBeBetween", column, {"min_value": 0, "strict_min": True}
    )


def non_negative(column: str) -> Expectation:
    return Expectation("ExpectColumnValuesToBeBetween", column, {"min_value": 0})


def _frame(name: str, table: str, columns: str, expectations, unnest: str | None = None) -> Frame:
    keys = "r._file, r._row_number"
    if unnest:
        sql = (
            f"select {keys}, {columns} from raw.{table} r, "
            f"unnest(r.{unnest}) as u(item) where {{batch}}"
        )
    else:
        sql = f"select {keys}, {columns} from raw.{table} r where {{batch}}"
    return Frame(name, sql, tuple(expectations))


def _money(expr: str, alias: str) -> str:
    # validation reads money as double: a range check needs no exactness, pandas handles it natively
    return f"cast({expr} as double) as {alias}"


SUITES: dict[str, tuple[Frame, ...]] = {
    "returns_saas_webhooks": (
        _frame(
            "deliveries",
            "returns_saas_webhooks",
            "r.webhook_id, r.topic, r.delivered_at, r.return_id, r.rma, r.state, r.updated_at, "
            f"r.outcome, {_money('r.total_refund', 'total_refund')}",
            [
                *not_null(
                    "webhook_id", "topic", "delivered_at", "return_id", "rma", "state", "updated_at"
                ),
                in_set("topic", WEBHOOK_TOPICS),
                in_set("state", RETURN_STATES),
                in_set("outcome", RETURN_OUTCOMES),
                non_negative("total_refund"),
            ],
        ),
        _frame(
            "line_items",
            "returns_saas_webhooks",
            "r.rma, item.line_item_id, item.quantity, "
            f"{_money('item.price', 'price')}, {_money('item.refund', 'refund')}",
            [positive("quantity"), non_negative("price"), non_negative("refund")],
            unnest="line_items",
        ),
    ),
    "shopify_refunds": (
        _frame(
            "refunds",
            "shopify_refunds",
            "r.id, r.order_id, r.created_at",
            not_null("id", "order_id", "created_at"),
        ),
        _frame(
            "refund_line_items",
            "shopify_refunds",
            "r.id as refund_id, item.id as refund_line_item_id, item.line_item_id, item.quantity, "
            f"{_money('item.subtotal', 'subtotal')}, {_money('item.total_tax', 'total_tax')}",
            [positive("quantity"), non_negative("subtotal"), non_negative("total_tax")],
            unnest="refund_line_items",
        ),
        _frame(
            "transactions",
            "shopify_refunds",
            "r.id as refund_id, item.id as transaction_id, item.kind, item.status, "
            f"{_money('item.amount', 'amount')}",
            [
                in_set("kind", SHOPIFY_TRANSACTION_KINDS),
                in_set("status", SHOPIFY_TRANSACTION_STATUSES),
                non_negative("amount"),
            ],
            unnest="transactions",
        ),
    ),
    "amazon_returns": (
        _frame(
            "returns",
            "amazon_returns",
            "r.report_date, r.order_id, r.amazon_rma_id, r.merchant_sku, r.return_quantity, "
            f"r.return_request_status, {_money('r.refunded_amount', 'refunded_amount')}, "
            f"{_money('r.label_cost', 'label_cost')}, {_money('r.order_amount', 'order_amount')}",
            [
                *not_null("report_date", "order_id", "amazon_rma_id", "merchant_sku"),
                *not_null("return_quantity"),
                in_set("return_request_status", AMAZON_RETURN_REQUEST_STATUSES),
                positive("return_quantity"),
                non_negative("refunded_amount"),
                non_negative("label_cost"),
                non_negative("order_amount"),
            ],
        ),
    ),
    "b2b_credit_requests": (
        _frame(
            "credit_requests",
            "b2b_credit_requests",
            "r.request_id, r.sku, cast(r.quantity as double) as quantity, "
            f"{_money('r.unit_price', 'unit_price')}, r.status",
            [
                *not_null("request_id", "sku", "quantity", "status"),
                in_set("status", B2B_STATUSES),
                positive("quantity"),
                non_negative("unit_price"),
            ],
        ),
    ),
    "sku_crosswalk": (
        _frame(
            "sku_crosswalk",
            "sku_crosswalk",
            "r.channel, r.channel_sku, r.erp_product_code",
            [*not_null("channel", "channel_sku", "erp_product_code"), in_set("channel", CHANNELS)],
        ),
    ),
    "warehouse_crosswalk": (
        _frame(
            "warehouse_crosswalk",
            "warehouse_crosswalk",
            "r.dc_code, r.erp_warehouse_code",
            not_null("dc_code", "erp_warehouse_code"),
        ),
    ),
}
