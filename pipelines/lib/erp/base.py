"""The ERP-agnostic write-back and pull interface (DESIGN §6, §8).

Everything above staging is ERP-agnostic; an ERP is reached only through an `ErpAdapter`. Tryton is
the reference implementation (`pipelines.lib.erp.tryton`); NetSuite, Dynamics 365 or SAP adapters
would implement the same small protocol.

Errors are typed so the push job can decide without parsing messages:
- `ErpTransientError`: retry with backoff (connection refused, timeouts, HTTP 5xx, locks);
- `ErpPermanentError`: the ERP refused the document (validation): retrying cannot help, a person
  must look (exception queue), the ERP's own message is kept;
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

DocumentKind = Literal["credit_note", "stock_move"]
DOCUMENT_KINDS: tuple[DocumentKind, ...] = ("credit_note", "stock_move")


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
