"""Tryton 8.2 over JSON-RPC: the client and the reference `ErpAdapter` (DESIGN §6, §8).

The client logs in once (`common.db.login`) and sends `Authorization: Session
base64(login:user_id:token)` on every call (HTTP Basic would re-check the password on each call).
It speaks Tryton's JSON dialect: Decimal, date and datetime travel as `{"__class__": ...}` objects.
Only the standard library is used.

Idempotency lives in the ERP itself: a credit note carries its key in `account.invoice.reference`;
a stock posting is an internal shipment (`stock.shipment.internal`) whose `reference` is the key,
its move carrying `origin = sale.line,<id>` when the return line is known. Before creating, the
adapter searches the key; a document found half-way (created but not yet posted or done, e.g.
after a crash between two calls) is finished rather than created again. A cancelled document
with the key is a permanent error: someone in the ERP decided against it, a person must look.
(Two pushers racing on one key are excluded upstream: one push job per batch.)
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pipelines.errors import ConfigError
from pipelines.lib.erp.base import (
    CreditLine,
    DocumentKind,
    ErpAuthError,
    ErpConfigError,
    ErpDocument,
    ErpPermanentError,
    ErpTransientError,
)

# Tryton exceptions that say "try again later" (lock, concurrent write, timeout)
_TRANSIENT_ERRORS = {
    "DatabaseOperationalError",
    "ConcurrencyException",
    "TimeoutException",
    "RateLimitException",
}
_SKIP_WARNINGS = {"_skip_warnings": True}


# -- Tryton's JSON dialect ---------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return {
            "__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
            "hour": value.hour, "minute": value.minute, "second": value.second,
            "microsecond": value.microsecond,
        }  # fmt: skip
    if isinstance(value, date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, time):
        return {
            "__class__": "time", "hour": value.hour, "minute": value.minute,
            "second": value.second, "microsecond": value.microsecond,
        }  # fmt: skip
    if isinstance(value, timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, bytes):
        return {"__class__": "bytes", "base64": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(obj: dict[str, Any]) -> Any:
    kind = obj.get("__class__")
    if kind is None:
        return obj
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "datetime":
        return datetime(
            obj["year"], obj["month"], obj["day"], obj.get("hour", 0), obj.get("minute", 0),
            obj.get("second", 0), obj.get("microsecond", 0),
        )  # fmt: skip
    if kind == "date":
        return date(obj["year"], obj["month"], obj["day"])
    if kind == "time":
        return time(obj["hour"], obj["minute"], obj.get("second", 0), obj.get("microsecond", 0))
    if kind == "timedelta":
        return timedelta(seconds=obj["seconds"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def _without_userinfo(url: str) -> str:
    """The URL without `user:password@` (credentials come from their own variables only)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# -- the client ----------------------------------------------------------------------------------


class TrytonClient:
    """A logged-in JSON-RPC session with one Tryton database.

    The password is kept only to log in again when the session expires; it never appears in
    `repr`, log lines or exception messages.
    """

    def __init__(
        self, url: str, database: str, user: str, password: str, *, timeout: float = 30
    ) -> None:
        from pipelines.settings import check_erp_url

        try:
            check_erp_url(url)
        except ConfigError as exc:
            raise ErpConfigError(str(exc)) from None
        self.url = _without_userinfo(url.rstrip("/"))
        self.database = database
        self.user = user
        self.__password = password
        self.timeout = timeout
        self._session: str | None = None
        self.user_id: int | None = None
        self.context: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TrytonClient(url={self.url!r}, database={self.database!r}, user={self.user!r})"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/{self.database}/rpc/"

    def _where(self) -> str:
        return f"user {self.user!r} on database {self.database!r} at {self.url}"

    def login(self) -> None:
        """`common.db.login`, then the user's preferences as the context of every call."""
        try:
            result = self._post("common.db.login", [self.user, {"password": self.__password}])
        except _HttpStatus as exc:
            if exc.status in (401, 403):
                raise ErpAuthError(
                    f"Tryton refused the login of {self._where()}: wrong user or password "
                    f"(RETURNSYNC_ERP_USER / RETURNSYNC_ERP_PASSWORD)"
                ) from None
            if exc.status == 404:
                raise ErpAuthError(
                    f"Tryton at {self.url} has no database {self.database!r} "
                    f"(RETURNSYNC_ERP_DATABASE), or the URL is not a Tryton server "
                    f"(RETURNSYNC_ERP_URL)"
                ) from None
            if exc.status == 429:
                raise ErpTransientError(
                    f"Tryton is rate-limiting logins of {self._where()} (too many attempts)"
                ) from None
            raise exc.as_erp_error(f"login of {self._where()}") from None
        if not isinstance(result, list) or len(result) < 2:
            raise ErpAuthError(f"Tryton refused the login of {self._where()}: {result!r}")
        self.user_id, token = int(result[0]), str(result[1])
        credentials = f"{self.user}:{self.user_id}:{token}".encode()
        self._session = "Session " + base64.b64encode(credentials).decode()
        self.context = {}
        preferences = self.call_method("model.res.user.get_preferences", [True, {}])
        self.context = dict(preferences)  # company, companies, language...: as the client does

    def call_method(self, method: str, params: list[Any]) -> Any:
        """Call any RPC method with the session (logging in first, again once if it expired)."""
        if self._session is None:
            self.login()
        try:
            return self._post(method, params)
        except _HttpStatus as exc:
            if exc.status != 401:
                raise self._status_error(exc, method) from None
        self.login()  # the session expired (or the server restarted): log in once more
        try:
            return self._post(method, params)
        except _HttpStatus as exc:
            if exc.status == 401:
                raise ErpAuthError(f"Tryton refused the session of {self._where()}") from None
            raise self._status_error(exc, method) from None

    def _status_error(self, exc: _HttpStatus, method: str) -> Exception:
        if exc.status == 403:
            return ErpPermanentError(
                f"Tryton does not allow {self._where()} to call {method} (HTTP 403: "
                "the user lacks the access right or group)"
            )
        return exc.as_erp_error(method)

    def call(self, model: str, method: str, *args: Any, context: Mapping | None = None) -> Any:
        """`model.<model>.<method>(*args, context)` with the user's context (+ `context`)."""
        ctx = {**self.context, **(context or {})}
        return self.call_method(f"model.{model}.{method}", [*args, ctx])

    def _post(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"id": 1, "method": method, "params": _encode(params)}).encode()
        headers = {"Content-Type": "application/json"}
        if self._session and method != "common.db.login":
            headers["Authorization"] = self._session
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read(), object_hook=_decode)
        except urllib.error.HTTPError as exc:
            raise _HttpStatus(exc.code, self.url) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ErpTransientError(f"cannot reach Tryton at {self.url}: {reason}") from None
        except (ValueError, OSError) as exc:  # a half-read or non-JSON answer
            raise ErpTransientError(f"bad answer from Tryton at {self.url}: {exc}") from None
        if "error" in payload and payload["error"] is not None:
            raise _error(method, payload["error"])
        return payload.get("result")


class _HttpStatus(Exception):
    """An HTTP error status, resolved into an Erp*Error by the caller that knows the context."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(status)
        self.status = status
        self.url = url

    def as_erp_error(self, what: str) -> Exception:
        if self.status >= 500 or self.status in (408, 429, 503):
            return ErpTransientError(f"Tryton at {self.url} answered HTTP {self.status} to {what}")
        if self.status in (401, 403):
            return ErpAuthError(f"Tryton at {self.url} answered HTTP {self.status} to {what}")
        return ErpPermanentError(f"Tryton at {self.url} answered HTTP {self.status} to {what}")


def _error(method: str, error: Any) -> Exception:
    """Tryton's `[exception name, args]` as a typed error with Tryton's own message."""
    name, args = (error[0], error[1]) if isinstance(error, list) and len(error) > 1 else (error, [])
    message = ""
    if isinstance(args, list):
        parts = [a for a in args[:2] if isinstance(a, str) and a]
        message = " ".join(parts)
    elif isinstance(args, str):
        message = args
    erp_message = message or str(name)
    text = f"Tryton {name} in {method}: {erp_message}"
    if name in _TRANSIENT_ERRORS:
        return ErpTransientError(text)
    return ErpPermanentError(text, erp_message=erp_message)


# -- the adapter ---------------------------------------------------------------------------------


def _line(line: CreditLine | tuple[str, Any, Any]) -> CreditLine:
    if isinstance(line, CreditLine):
        return line
    code, quantity, price = line
    return CreditLine(code, quantity, Decimal(str(price)))


def _origin(return_line_ref: int | str | None) -> str | None:
    """`sale.line,<id>` from a line id, an `sale.line,<id>` string or None."""
    if return_line_ref is None or return_line_ref == "":
        return None
    if isinstance(return_line_ref, int):
        return f"sale.line,{return_line_ref}"
    text = str(return_line_ref)
    if text.isdigit():
        return f"sale.line,{text}"
    if not text.startswith("sale.line,"):
        raise ErpPermanentError(f"return line reference must be a sale.line id, got {text!r}")
    return text


class TrytonAdapter:
    """`ErpAdapter` for Tryton 8.2."""

    INVOICE_MODEL = "account.invoice"
    SHIPMENT_MODEL = "stock.shipment.internal"

    def __init__(self, client: TrytonClient) -> None:
        self.client = client
        self._ids: dict[tuple[str, str], int] = {}

    @classmethod
    def connect(
        cls, url: str | None, database: str | None, user: str | None, password: str | None,
        *, timeout: float = 30,
    ) -> TrytonAdapter:  # fmt: skip
        """An adapter from explicit credentials; a missing one is an `ErpAuthError` naming it."""
        missing = [
            var
            for var, value in (
                ("RETURNSYNC_ERP_URL", url),
                ("RETURNSYNC_ERP_DATABASE", database),
                ("RETURNSYNC_ERP_USER", user),
                ("RETURNSYNC_ERP_PASSWORD", password),
            )
            if not value
        ]
        if missing:
            raise ErpConfigError(f"ERP credentials are not configured: set {', '.join(missing)}")
        return cls(TrytonClient(url, database, user, password, timeout=timeout))

    @classmethod
    def from_settings(cls, settings: Any, *, timeout: float = 30) -> TrytonAdapter:
        """An adapter from `Settings` (credentials only ever come from the environment)."""
        return cls.connect(
            settings.erp_url, settings.erp_database, settings.erp_user, settings.erp_password,
            timeout=timeout,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"TrytonAdapter({self.client!r})"

    def check(self) -> None:
        """Log in: `ErpTransientError` if Tryton cannot be reached, `ErpAuthError` if it refuses
        the credentials. Callers check before anything changes state (push, pull)."""
        self.client.login()

    # -- lookups ---------------------------------------------------------------------------------

    def _id_by_code(self, model: str, code: str, what: str) -> int:
        key = (model, code)
        if key not in self._ids:
            ids = self.client.call(model, "search", [("code", "=", code)], 0, 2, None)
            if len(ids) != 1:
                found = "no" if not ids else "more than one"
                raise ErpPermanentError(f"Tryton has {found} {what} with code {code!r}")
            self._ids[key] = ids[0]
        return self._ids[key]

    def _party_id(self, party: int | str) -> int:
        if isinstance(party, int):
            return party
        return self._id_by_code("party.party", party, "party")

    def _read_one(self, model: str, record_id: int, fields: Sequence[str]) -> dict[str, Any]:
        rows = self.client.call(model, "read", [record_id], list(fields))
        if not rows:
            raise ErpPermanentError(f"Tryton has no {model} with id {record_id}")
        return rows[0]

    # -- documents -------------------------------------------------------------------------------

    def find_document(self, kind: DocumentKind, idempotency_key: str) -> ErpDocument | None:
        if kind == "credit_note":
            model, domain = self.INVOICE_MODEL, [("reference", "=", idempotency_key),
                                                 ("type", "=", "out")]  # fmt: skip
        elif kind == "stock_move":
            model, domain = self.SHIPMENT_MODEL, [("reference", "=", idempotency_key)]
        else:
            raise ValueError(f"unknown document kind {kind!r}")
        ids = self.client.call(model, "search", domain, 0, None, [("id", "ASC")])
        if not ids:
            return None
        docs = [self._document(kind, i, idempotency_key) for i in ids]
        live = [d for d in docs if not d.is_cancelled]
        return (live or docs)[0]

    def _document(
        self, kind: DocumentKind, record_id: int, key: str, *, created: bool = False
    ) -> ErpDocument:
        if kind == "credit_note":
            row = self._read_one(
                self.INVOICE_MODEL, record_id, ["number", "state", "total_amount", "lines"]
            )
            return ErpDocument(
                kind, record_id, key, row["number"], row["state"], created,
                row["total_amount"], self.INVOICE_MODEL, tuple(row["lines"]),
            )  # fmt: skip
        row = self._read_one(self.SHIPMENT_MODEL, record_id, ["number", "state", "moves"])
        return ErpDocument(
            kind, record_id, key, row["number"], row["state"], created, None,
            self.SHIPMENT_MODEL, tuple(row["moves"]),
        )  # fmt: skip

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
        """A posted customer credit note (negative lines) whose `reference` is the key."""
        existing = self.find_document("credit_note", idempotency_key)
        if existing is not None:
            return self._finish_credit_note(existing)
        credit_lines = [_line(line) for line in lines]
        if not credit_lines:
            raise ErpPermanentError("a credit note needs at least one line")
        origin = _origin(return_line_ref)
        party_id = self._party_id(party)
        currency_id = self._id_by_code("currency.currency", currency_code, "currency")
        party_row = self._read_one("party.party", party_id, ["addresses", "account_receivable"])
        if not party_row["addresses"]:
            raise ErpPermanentError(f"Tryton party {party_id} has no address to invoice")
        receivable = party_row["account_receivable"] or self._default_account("receivable")
        journals = self.client.call(
            "account.journal", "search", [("type", "=", "revenue")], 0, 1, None
        )
        if not journals:
            raise ErpPermanentError("Tryton has no revenue journal for credit notes")
        common = {"currency": currency_id, "party": party_id, "invoice_type": "out"}
        if self.client.context.get("company"):
            common["company"] = self.client.context["company"]
        invoice_lines = [{**self._invoice_line(line, origin), **common} for line in credit_lines]
        values = {
            "type": "out",
            "party": party_id,
            "invoice_address": party_row["addresses"][0],
            "currency": currency_id,
            "account": receivable,
            "journal": journals[0],
            "invoice_date": invoice_date or datetime.now(UTC).date(),
            "reference": idempotency_key,
            "description": description,
            "lines": [["create", invoice_lines]],
        }
        (invoice_id,) = self.client.call(self.INVOICE_MODEL, "create", [values])
        doc = self._document("credit_note", invoice_id, idempotency_key, created=True)
        return self._finish_credit_note(doc)

    def _finish_credit_note(self, doc: ErpDocument) -> ErpDocument:
        if doc.is_cancelled:
            raise ErpPermanentError(
                f"credit note {doc.number or doc.erp_id} with key {doc.idempotency_key!r} was "
                "cancelled in Tryton; not creating another one"
            )
        if doc.state in ("draft", "validated"):
            self.client.call(self.INVOICE_MODEL, "post", [doc.erp_id], context=_SKIP_WARNINGS)
            refreshed = self._document("credit_note", doc.erp_id, doc.idempotency_key)
            return _with_created(refreshed, doc.created)
        return doc

    def _default_account(self, kind: str) -> int:
        row = self._read_one("account.configuration", 1, [f"default_account_{kind}"])
        account = row[f"default_account_{kind}"]
        if not account:
            raise ErpPermanentError(f"Tryton has no default {kind} account configured")
        return account

    def _invoice_line(self, line: CreditLine, origin: str | None) -> dict[str, Any]:
        product_id = self._id_by_code("product.product", line.product_code, "product")
        product = self._read_one("product.product", product_id, ["template", "default_uom"])
        template = self._read_one("product.template", product["template"], ["account_category"])
        if not template["account_category"]:
            raise ErpPermanentError(f"Tryton product {line.product_code!r} has no account category")
        category = self._read_one(
            "product.category", template["account_category"], ["account_revenue"]
        )
        if not category["account_revenue"]:
            raise ErpPermanentError(f"Tryton product {line.product_code!r} has no revenue account")
        values = {
            "type": "line",
            "product": product_id,
            "unit": product["default_uom"],
            "quantity": -abs(float(line.quantity)),
            "unit_price": abs(Decimal(str(line.unit_price))),
            "account": category["account_revenue"],
            "description": line.product_code,
        }
        if origin:
            values["origin"] = origin
        return values

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
        """A done internal shipment (reference = key) moving `quantity` into the location.

        The move comes from `from_location_code`, by default the input location of the
        destination's warehouse (where returned goods arrive).
        """
        existing = self.find_document("stock_move", idempotency_key)
        if existing is not None:
            return self._finish_shipment(existing)
        if float(quantity) == 0:
            raise ErpPermanentError("a stock posting needs a non-zero quantity")
        origin = _origin(return_line_ref)
        product_id = self._id_by_code("product.product", product_code, "product")
        product = self._read_one("product.product", product_id, ["default_uom"])
        to_id = self._id_by_code("stock.location", to_location_code, "location")
        if from_location_code:
            from_id = self._id_by_code("stock.location", from_location_code, "location")
        else:
            from_id = self._warehouse_input(to_id, to_location_code)
        when = effective_date or datetime.now(UTC).date()
        move = {
            "product": product_id,
            "unit": product["default_uom"],
            "quantity": abs(float(quantity)),
            "from_location": from_id,
            "to_location": to_id,
            "planned_date": when,
            "effective_date": when,
        }
        if origin:
            move["origin"] = origin
        values = {
            "reference": idempotency_key,
            "from_location": from_id,
            "to_location": to_id,
            "planned_date": when,
            "planned_start_date": when,
            "effective_date": when,
            "effective_start_date": when,
            "moves": [["create", [move]]],
        }
        # Tryton 8.2's internal shipment has no free-text field: `description` is not stored
        # there (the reference carries the idempotency key, which is what finds it again).
        (shipment_id,) = self.client.call(self.SHIPMENT_MODEL, "create", [values])
        doc = self._document("stock_move", shipment_id, idempotency_key, created=True)
        return self._finish_shipment(doc)

    def _warehouse_input(self, location_id: int, code: str) -> int:
        """The input location of the warehouse holding `location_id` (walking up its parents)."""
        current: int | None = location_id
        for _ in range(20):  # location trees are shallow; a cycle cannot exist in Tryton
            if current is None:
                break
            row = self._read_one("stock.location", current, ["type", "parent", "input_location"])
            if row["type"] == "warehouse":
                return row["input_location"]
            current = row["parent"]
        raise ErpPermanentError(f"Tryton location {code!r} is not inside a warehouse")

    def _finish_shipment(self, doc: ErpDocument) -> ErpDocument:
        """Drive the shipment to `done` from wherever it stopped (draft → waiting → assigned)."""
        if doc.is_cancelled:
            raise ErpPermanentError(
                f"stock shipment {doc.number or doc.erp_id} with key {doc.idempotency_key!r} was "
                "cancelled in Tryton; not creating another one"
            )
        steps = {"request": "draft", "draft": "wait", "waiting": "assign_force", "assigned": "do"}
        state = doc.state
        for _ in range(len(steps) + 1):
            if state == "done":
                break
            button = steps.get(state)
            if button is None:
                raise ErpPermanentError(
                    f"stock shipment {doc.number or doc.erp_id} is in state {state!r}; "
                    "cannot finish it"
                )
            self.client.call(self.SHIPMENT_MODEL, button, [doc.erp_id], context=_SKIP_WARNINGS)
            state = self._read_one(self.SHIPMENT_MODEL, doc.erp_id, ["state"])["state"]
        return _with_created(
            self._document("stock_move", doc.erp_id, doc.idempotency_key), doc.created
        )

    # -- batch pull ------------------------------------------------------------------------------

    def pull(
        self, model: str, since: datetime | None, fields: Sequence[str], *, batch_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Records created or written at or after `since`, in pages by id.

        Inactive records are included (`active_test: False`): a deactivated product is a change.
        """
        wanted = sorted({"id", "create_date", "write_date", *fields})
        base: list[Any] = []
        if since is not None:
            since = since.astimezone(UTC).replace(tzinfo=None) if since.tzinfo else since
            base = [["OR", ("write_date", ">=", since), ("create_date", ">=", since)]]
        last_id = 0
        while True:
            domain = [*base, ("id", ">", last_id)]
            rows = self.client.call(
                model, "search_read", domain, 0, batch_size, [("id", "ASC")], wanted,
                context={"active_test": False},
            )  # fmt: skip
            yield from rows
            if len(rows) < batch_size:
                return
            last_id = rows[-1]["id"]


def _with_created(doc: ErpDocument, created: bool) -> ErpDocument:
    if doc.created == created:
        return doc
    return ErpDocument(
        doc.kind, doc.erp_id, doc.idempotency_key, doc.number, doc.state, created, doc.amount,
        doc.model, doc.line_ids,
    )  # fmt: skip
