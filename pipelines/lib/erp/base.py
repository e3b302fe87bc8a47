"""The ERP-agnostic write-back and pull interface (DESIGN §6, §8). Stable: adapters and the loop
test depend on it.

Everything above staging is ERP-agnostic; an ERP is reached only through an `ErpAdapter`, built by
one factory from settings (`pipelines.lib.erp.factory.adapter_from_settings`). Tryton is the
reference implementation (`pipelines.lib.erp.tryton`); NetSuite, Dynamics 365 or SAP adapters
implement the same small protocol and register in `factory.ADAPTERS`.

## The action vocabulary (DESIGN §6)

The planner (`pipelines.lib.writeback.plan`) turns each fixable open mismatch into one adjustment
with one of these actions; the push calls `ErpAdapter.apply(action, idempotency_key, payload)`.
A fix completes the ERP's own documents of the return before it creates anything new.

- `finish_return_shipment` (goods short in the ERP: `receipt_not_posted`, ERP-short
  `posted_qty_mismatch`): receive and finish the return's own unfinished customer return shipment
  for the line, `quantity` units into `to_location_code`; when none is left to finish, create a
  supplementary one (as `create_return_shipment`).
- `create_return_shipment` (the same, when CDC showed no shipment left to finish): a new customer
  return shipment for the line, from the customer to `to_location_code`, received and done (an own
  shipment that appeared meanwhile is finished instead).
- `internal_move` (goods in the wrong place: `disposition_mismatch`): an internal shipment of
  `quantity` units from `from_location_code` (where the ERP holds them) to `to_location_code`
  (the disposition location that is short), done (between two warehouses through the ERP's
  transit location); never more than the ERP holds there.
- `post_draft_credit_note` (money short in the ERP: `refund_without_credit`, ERP-short
  `credit_amount_mismatch`): the return's own draft credit note, its lines corrected to `lines`
  (the uncredited authorized units at the line's unit price, origin the return line; its other
  lines removed), posted; when there is none, create one (as `create_credit_note`). Other drafts
  crediting the same lines are cancelled or lose those lines.
- `create_credit_note` (the same, when CDC showed no draft): a new posted credit note with
  `lines` (real units and unit prices, origin the return line).

After a fix, for that return line: the ERP's stock per location equals the WMS's, its posted
credit equals the channel refund (within tolerance), no draft document remains that could post
the same goods or money again, and no location goes negative.

Payloads (JSON, decimals as strings; what the idempotency key hashes):
- stock actions: `return_line_ref` (the ERP return line id), `product_code`, `quantity` (units to
  bring into the location), `to_location_code`; `internal_move` also `from_location_code`; all
  have `description`.
- credit actions: `return_line_ref` (the first line credited), `party` (ERP party id or code),
  `currency_code`, `lines` = `[{return_line_ref, product_code, quantity, unit_price}]` (positive
  units and prices to credit, before tax: the credit note's lines carry the return lines' taxes,
  as the ERP's own credit note of a return does), `expected_total` (the channel refund the ERP
  has not credited yet, taxes included) and `tolerance` (the currency's amount tolerance): the
  adapter computes the credit's total incl. tax as the ERP does and writes nothing when it is
  not `expected_total` within `tolerance` (`ErpPermanentError`: a partial refund or a fee is a
  person's), `description`. Payloads of earlier releases have no `expected_total`.

Documents are dated the push date (the ERP's today). Every document carries the adjustment's
idempotency key where the ERP keeps an external reference (`DOCUMENT_KINDS`: a credit note, a
customer return shipment, an internal shipment); `find_document(kind, key)` looks it up, and
`apply` looks it up before doing anything, so a retry, a replay or a second launch finds the
document instead of making a second one.

Earlier releases used two actions, `stock_move` (an internal shipment into the disposition
location) and `credit_note` (a new credit note). Migration 7 renames those rows
(`LEGACY_ACTIONS`); their keys are still found, because the lookup of a kind searches every place
an earlier release put that kind's key (`stock_move` keys: internal shipments, which the return
shipment kind searches too).

## Errors

Errors are typed so the push job can decide without parsing messages:
- `ErpTransientError`: retry with backoff (connection refused, timeouts, HTTP 5xx, locks);
- `ErpPermanentError`: the ERP refused the document (validation, a closed fiscal period, a
  missing product): retrying cannot help, a person must look (exception queue), the ERP's own
  message is kept;
- `ErpAuthError`: credentials or address are wrong; the message names what (URL, database, user)
  and never contains the password. It is an `ErpUnavailable` (exit code 4 at the CLI);
- `ErpConfigError` (an `ErpAuthError` and a `ConfigError`, exit code 2): a setting is missing or
  the URL is not a URL, so nothing was tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pipelines.errors import EXIT_USAGE, ConfigError, ErpUnavailable

T = TypeVar("T")

Action = Literal[
    "finish_return_shipment",
    "create_return_shipment",
    "internal_move",
    "post_draft_credit_note",
    "create_credit_note",
]
ACTIONS: tuple[Action, ...] = (
    "finish_return_shipment",
    "create_return_shipment",
    "internal_move",
    "post_draft_credit_note",
    "create_credit_note",
)
STOCK_ACTIONS: tuple[Action, ...] = ("finish_return_shipment", "create_return_shipment")
MOVE_ACTIONS: tuple[Action, ...] = ("internal_move",)
CREDIT_ACTIONS: tuple[Action, ...] = ("post_draft_credit_note", "create_credit_note")
# the action to take when the ERP has no own document left to complete
FALLBACK: dict[str, Action] = {
    "finish_return_shipment": "create_return_shipment",
    "post_draft_credit_note": "create_credit_note",
}
# earlier releases' actions -> today's (migration 7 renames the rows; keys stay as they were)
LEGACY_ACTIONS: dict[str, Action] = {
    "stock_move": "finish_return_shipment",
    "credit_note": "create_credit_note",
}

# where a key is kept: a credit note, a customer return shipment, an internal shipment (an
# earlier release's `stock_move` documents are internal shipments)
DocumentKind = Literal["credit_note", "return_shipment", "stock_move"]
DOCUMENT_KINDS: tuple[DocumentKind, ...] = ("credit_note", "return_shipment", "stock_move")
ACTION_KIND: dict[str, DocumentKind] = {
    "finish_return_shipment": "return_shipment",
    "create_return_shipment": "return_shipment",
    "internal_move": "stock_move",
    "post_draft_credit_note": "credit_note",
    "create_credit_note": "credit_note",
    "stock_move": "stock_move",
    "credit_note": "credit_note",
}


def document_kind(action: str) -> DocumentKind:
    """The kind of ERP document an action's key is kept on."""
    try:
        return ACTION_KIND[action]
    except KeyError:
        raise ValueError(f"unknown adjustment action {action!r}") from None


class ErpError(Exception):
    """Base of every error an adapter raises."""


class ErpTransientError(ErpError):
    """The ERP could not be reached or failed temporarily: safe to retry."""


class ErpPermanentError(ErpError):
    """The ERP refused the request (validation, missing record): retrying cannot help."""

    def __init__(self, message: str, *, erp_message: str | None = None) -> None:
        super().__init__(message)
        self.erp_message = erp_message or message


class ErpAuthError(ErpError, ErpUnavailable):
    """Wrong URL, database, user or password. The message never contains the password."""


class ErpConfigError(ErpAuthError, ConfigError):
    """The ERP settings are missing or malformed (no call was made)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class CreditLine:
    """One credited line: `quantity` and `unit_price` as positive amounts to credit."""

    product_code: str
    quantity: Decimal | float | int
    unit_price: Decimal


@dataclass(frozen=True)
class ErpDocument:
    """A document in the ERP that carries an idempotency key."""

    kind: DocumentKind
    erp_id: int
    idempotency_key: str
    number: str | None
    state: str
    created: bool = False  # True only when this very call created it
    amount: Decimal | None = None  # credit notes: the (negative) total
    model: str = ""  # the ERP's own model name, e.g. account.invoice
    line_ids: tuple[int, ...] = field(default=())  # invoice lines or stock moves

    @property
    def is_cancelled(self) -> bool:
        return self.state in ("cancelled", "cancel")


@runtime_checkable
class ErpAdapter(Protocol):
    """What returnsync needs from an ERP: find or create keyed documents, and pull changes."""

    def find_document(self, kind: DocumentKind, idempotency_key: str) -> ErpDocument | None:
        """The document carrying `idempotency_key`, or None. Never creates anything."""
        ...

    def create_credit_note(
        self,
        idempotency_key: str,
        *,
        return_line_ref: int | str | None,
        party: int | str,
        currency_code: str,
        lines: Sequence[CreditLine | tuple[str, Any, Any]],
        description: str,
        invoice_date: date | None = None,
    ) -> ErpDocument:
        """A posted customer credit note carrying the key; the existing one if the key is known.

        `party` is the ERP's party id (int) or the party's code (str). `return_line_ref` is the
        ERP return line (an id, or the ERP's own reference to it); `lines` hold positive
        quantities and prices to credit (the document itself carries negative lines).
        """
        ...

    def create_stock_move(
        self,
        idempotency_key: str,
        *,
        return_line_ref: int | str | None,
        product_code: str,
        quantity: Decimal | float | int,
        to_location_code: str,
        from_location_code: str | None = None,
        effective_date: date | None = None,
        description: str | None = None,
    ) -> ErpDocument:
        """A done stock posting into `to_location_code` carrying the key; existing one if known."""
        ...

    def apply(self, action: str, idempotency_key: str, payload: Mapping[str, Any]) -> ErpDocument:
        """Carry out one adjustment of the vocabulary above, exactly once per key.

        Looks the key up first and adopts (finishing it when it stopped half-way) the document
        that carries it. `ErpPermanentError` with the ERP's message when it cannot be done (a
        closed fiscal period, a missing product...)."""
        ...

    def verify(self, action: str, payload: Mapping[str, Any]) -> list[str]:
        """What would stop `apply` (for `push --dry-run`): one line per problem, e.g. "Tryton has
        no product with code 'P10140'"; empty when it can be built. Changes nothing."""
        ...

    def check(self) -> None:
        """Reach the ERP and log in (`ErpTransientError` / `ErpAuthError`); changes nothing."""
        ...

    def pull(
        self, model: str, since: datetime | None, fields: Sequence[str], *, batch_size: int = 500
    ) -> Iterator[Mapping[str, Any]]:
        """Records of `model` created or written at or after `since` (all if None), oldest first.

        Each row has `id`, `create_date` and `write_date` (naive UTC datetimes) besides `fields`.
        """
        ...


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    on_retry: Callable[[int, ErpTransientError, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried with exponential backoff while it raises `ErpTransientError`.

    Permanent and auth errors are raised at once. After `attempts` transient failures the last
    one is raised. Safe for the adapter's create calls: they search their key first, so a retry
    after a lost answer finds the document instead of creating a second one.
    `on_retry(attempt, error, delay)` is called before each wait (log the attempt there).
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ErpTransientError as exc:
            if attempt == attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")
