"""Write the ERP side of a simulated landscape into a real Tryton, through its JSON-RPC API.

DESIGN §13: the simulator writes its landscape as usual; this loader then reads the ERP state the
simulator wrote (the `erp.public.*` CDC files, `state.read_erp_state`) and makes it happen in
Tryton the way people would: parties and products are created, each order is a sale, each return
order is made with Tryton's `sale.return_sale` wizard and processed, which makes Tryton's own
customer return shipment and draft credit note; then the warehouse receives and posts, and the
accountant corrects and posts the credit note. The ERP-side faults come out of the same steps done
wrongly or left undone, as a person would make them:

- a shipment left unposted: received, but the return line's put-away move never done;
- goods posted short, over, to another disposition or another warehouse: the put-away move's
  quantity or location edited before it is done;
- a credit note too small (or too large): a correction line typed on the credit note;
- one posted twice: a second credit note for the same lines, posted;
- the wrong currency: the credit note's currency changed before posting;
- a credit note left in draft, or deleted (none at all), or an extra one cancelled.

What makes the answer key hold: every date a rule reads is a document date Tryton lets a user set
(`invoice_date` of credit notes, `effective_date` of moves and shipments, `sale_date`), written
from the simulated state; the times Tryton stamps itself (`create_date`, `write_date`) are the
load's, which no rule reads; amounts are Tryton's own totals, made equal to the simulated ones
(taxes per currency as in the simulator, rounded per line). Tryton's ids differ from the
simulator's; rules key on RMA numbers and product codes, which are carried over.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from returnsync_sim.reference import TAX_RATES

CENT = Decimal("0.01")
TAX_NAME = "Sales tax {code} ({rate}%)"
CURRENCY_NAMES = {
    "EUR": "Euro",
    "USD": "U.S. Dollar",
    "GBP": "Pound Sterling",
    "CHF": "Swiss Franc",
}
CURRENCY_RATES = {"EUR": "1.0", "USD": "1.08", "GBP": "0.86", "CHF": "0.94"}


@dataclass
class LoadResult:
    returns: int = 0
    sales: int = 0
    credit_notes: int = 0
    moves_done: int = 0
    seconds: float = 0.0
    by_rma: dict[str, int] = field(default_factory=dict)  # RMA -> Tryton return sale id
    # RMA -> (what the person did, the money at risk it left: refund - credit, in the currency)
    unit_short: dict[str, tuple[str, Decimal]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "returns": self.returns,
            "sales": self.sales,
            "credit_notes": self.credit_notes,
            "moves_done": self.moves_done,
            "seconds": round(self.seconds, 1),
            **({"unit_short_credits": {rma: what for rma, (what, _) in self.unit_short.items()}}
               if self.unit_short else {}),
        }  # fmt: skip


def call_accepting_warnings(client, model: str, method: str, *args: Any) -> Any:
    """Call a Tryton button, answering its warnings "yes" as the client does: Tryton raises a
    `UserWarning` named by its key until a `res.user.warning` with that key exists for the user
    (context keys starting with `_`, like `_skip_warnings`, never pass over RPC)."""
    from pipelines.lib.erp.base import ErpPermanentError

    for _ in range(200):
        try:
            return client.call(model, method, *args)
        except ErpPermanentError as exc:
            args_ = getattr(exc, "tryton_args", None)
            if getattr(exc, "tryton_name", "") != "UserWarning" or not args_:
                raise
            client.call(
                "res.user.warning", "create",
                [{"user": client.user_id, "name": args_[0], "always": False}],
            )  # fmt: skip
    raise RuntimeError(f"{model}.{method}: Tryton keeps warning")


def _ids(client, model: str, domain: list) -> list[int]:
    return client.call(model, "search", domain, 0, None, None)


def _by_code(client, model: str, codes: Iterable[str]) -> dict[str, int]:
    codes = sorted(set(codes))
    if not codes:
        return {}
    rows = client.call(model, "search_read", [("code", "in", codes)], 0, None, None, ["code"])
    return {r["code"]: r["id"] for r in rows}


class TrytonLoader:
    """Replays one simulated ERP state (`state.read_erp_state`) into a logged-in Tryton client."""

    def __init__(
        self,
        client,
        state: dict[str, dict[int, dict]],
        progress: Callable | None = None,
        unit_short_rmas: Iterable[str] = (),
    ):
        self.client = client
        self.s = state
        # returns whose credit note off by an amount is made short by a credited unit instead
        self.unit_short_rmas = frozenset(unit_short_rmas)
        self.progress = progress or (lambda _n: None)
        self.result = LoadResult()
        # simulator id -> Tryton id
        self.currency: dict[int, int] = {}
        self.party: dict[int, int] = {}
        self.address: dict[int, int] = {}
        self.product: dict[int, int] = {}
        self.location: dict[int, int] = {}
        self.sale: dict[int, int] = {}
        self.line: dict[int, int] = {}
        self.taxes: dict[str, int] = {}  # currency code -> tax id
        self.currency_code: dict[int, str] = {}
        self.to_post: list[tuple[date, int, int]] = []

    # -- reference data -------------------------------------------------------------------------

    def _setup(self) -> None:
        c = self.client
        codes = {r["id"]: r["code"] for r in self.s.get("currency_currency", {}).values()}
        self.currency_code = codes
        found = _by_code(c, "currency.currency", codes.values())
        for code in sorted(set(codes.values()) - set(found)):
            (cid,) = c.call(
                "currency.currency", "create",
                [{"name": CURRENCY_NAMES.get(code, code), "code": code, "symbol": code,
                  "rounding": CENT, "digits": 2,
                  "rates": [["create", [{"date": date(2000, 1, 1),
                                         "rate": Decimal(CURRENCY_RATES.get(code, "1.0"))}]]]}],
            )  # fmt: skip
            found[code] = cid
        self.currency = {sid: found[code] for sid, code in codes.items()}
        # taxes as the simulator charges them: one rate per currency, rounded per line
        (config_id,) = _ids(c, "account.configuration", []) or [None]
        if config_id is not None:
            # foreign-currency credit notes post exchange differences here
            fx = _ids(c, "account.account", [("code", "=", "6.2.1")])[:1]
            c.call(
                "account.configuration", "write", [config_id],
                {"tax_rounding": "line",
                 **({"currency_exchange_credit_account": fx[0],
                     "currency_exchange_debit_account": fx[0]} if fx else {})},
            )  # fmt: skip
        # the universal chart's "Accrued Taxes (Other Than Payroll)"
        tax_account = _ids(c, "account.account", [("code", "=", "2.2.3")])[:1]
        for code, rate in TAX_RATES.items():
            name = TAX_NAME.format(code=code, rate=(rate * 100).normalize())
            existing = _ids(c, "account.tax", [("name", "=", name)])
            if existing:
                self.taxes[code] = existing[0]
                continue
            (self.taxes[code],) = c.call(
                "account.tax", "create",
                [{"name": name, "description": name, "type": "percentage", "rate": rate,
                  "invoice_account": tax_account[0], "credit_note_account": tax_account[0]}],
            )  # fmt: skip
        locs = self.s.get("stock_location", {})
        found = _by_code(c, "stock.location", [r["code"] for r in locs.values() if r["code"]])
        customer = _ids(c, "stock.location", [("type", "=", "customer")])[0]
        for sid, row in locs.items():
            if row["type"] == "customer":
                self.location[sid] = customer
            elif row["code"] in found:
                self.location[sid] = found[row["code"]]
        term = _ids(c, "account.invoice.payment_term", [])[:1]
        self.payment_term = term[0] if term else None
        self.account_category = _ids(
            c, "product.category", [("accounting", "=", True), ("name", "=", "Goods (accounting)")]
        )[0]
        self.unit = _ids(c, "product.uom", [("name", "=", "Unit")])[0]

    def _parties(self, party_ids: set[int]) -> None:
        c = self.client
        rows = [self.s["party_party"][p] for p in sorted(party_ids) if p in self.s["party_party"]]
        found = _by_code(c, "party.party", [r["code"] for r in rows])
        new = [r for r in rows if r["code"] not in found]
        if new:
            created = c.call(
                "party.party", "create",
                [{"name": r["name"] or r["code"], "code": r["code"],
                  "customer_payment_term": self.payment_term,
                  "addresses": [["create", [{"street": "1 Returns Road", "city": "Springfield"}]]]}
                 for r in new],
            )  # fmt: skip
            found.update({r["code"]: i for r, i in zip(new, created, strict=True)})
        by_code = {r["code"]: r["id"] for r in rows}
        addresses = c.call(
            "party.address", "search_read", [("party", "in", list(found.values()))], 0, None,
            [("id", "ASC")], ["party"],
        )  # fmt: skip
        first: dict[int, int] = {}
        for a in addresses:
            first.setdefault(a["party"], a["id"])
        for code, tid in found.items():
            if code in by_code:
                self.party[by_code[code]] = tid
                self.address[by_code[code]] = first[tid]

    def _products(self, product_ids: set[int], names: dict[int, str], prices: dict[int, Decimal]):
        c = self.client
        rows = [self.s["product_product"][p] for p in sorted(product_ids)]
        found = _by_code(c, "product.product", [r["code"] for r in rows])
        new = [r for r in rows if r["code"] not in found]
        if new:
            c.call(
                "product.template", "create",
                [{"name": names.get(r["id"]) or r["code"], "code": r["code"], "type": "goods",
                  "default_uom": self.unit, "salable": True, "sale_uom": self.unit,
                  "list_price": prices.get(r["id"], Decimal("1")).quantize(Decimal("0.0001")),
                  "account_category": self.account_category,
                  "products": [["create", [{}]]]}
                 for r in new],
            )  # fmt: skip
            found = _by_code(c, "product.product", [r["code"] for r in rows])
        for r in rows:
            self.product[r["id"]] = found[r["code"]]

    # -- documents ------------------------------------------------------------------------------

    def load(self) -> LoadResult:
        started = time.monotonic()
        s = self.s
        sales = s.get("sale_sale", {})
        lines_by_sale: dict[int, list[dict]] = defaultdict(list)
        for line in sorted(s.get("sale_line", {}).values(), key=lambda r: r["id"]):
            lines_by_sale[line["sale"]].append(line)
        originals = [r for r in sales.values() if not r["origin"]]
        returns = [r for r in sales.values() if r["origin"]]
        self._setup()
        self._parties({r["party"] for r in sales.values()})
        product_ids = {ln["product"] for ls in lines_by_sale.values() for ln in ls}
        names = {ln["product"]: ln["description"] for ls in lines_by_sale.values() for ln in ls}
        prices = {ln["product"]: ln["unit_price"] for ls in lines_by_sale.values() for ln in ls}
        self._products(product_ids, names, prices)
        self._original_sales(sorted(originals, key=lambda r: r["id"]), lines_by_sale)
        confirmed = []
        for ret in sorted(returns, key=lambda r: r["id"]):
            return_id = self._return(ret, lines_by_sale[ret["id"]])
            if return_id is not None:
                confirmed.append((ret, return_id))
        # confirming processes them: Tryton makes each one's return shipment and credit note
        ids = [return_id for _, return_id in confirmed]
        if ids:
            self.client.call("sale.sale", "quote", ids)
            call_accepting_warnings(self.client, "sale.sale", "confirm", ids)
        done = set()
        for ret, return_id in confirmed:
            lines = lines_by_sale[ret["id"]]
            self._receive_and_post(ret, lines, return_id)
            self._credit_notes(ret, lines, return_id)
            done.add(ret["id"])
            self.result.returns += 1
            self.progress(1)
        for ret in returns:
            if ret["id"] not in done:
                self.result.returns += 1
                self.progress(1)
        for _date, _sim_id, invoice in sorted(self.to_post):
            call_accepting_warnings(self.client, "account.invoice", "post", [invoice])
        self.result.seconds = time.monotonic() - started
        return self.result

    def _line_values(self, line: dict, currency_code: str, sign: int = 1) -> dict:
        return {
            "type": "line",
            "product": self.product[line["product"]],
            "unit": self.unit,
            "quantity": sign * abs(float(line["quantity"])),
            "unit_price": Decimal(line["unit_price"]).quantize(Decimal("0.0001")),
            "description": line["description"] or "",
            "taxes": [["add", [self.taxes[currency_code]]]] if currency_code in self.taxes else [],
        }

    def _sale_values(self, sale: dict) -> dict:
        return {
            "party": self.party[sale["party"]],
            "invoice_address": self.address[sale["party"]],
            "shipment_address": self.address[sale["party"]],
            "warehouse": self.location[sale["warehouse"]],
            "currency": self.currency[sale["currency"]],
            "payment_term": self.payment_term,
            "reference": sale["reference"],
            "sale_date": sale["sale_date"],
        }

    def _original_sales(self, originals: list[dict], lines_by_sale: dict[int, list[dict]]):
        """The orders: confirmed, shipped and invoiced outside this replay (manual methods),
        so processing them makes no documents the returns do not need."""
        if not originals:
            return
        c = self.client
        values = []
        for sale in originals:
            code = self.currency_code[sale["currency"]]
            v = self._sale_values(sale)
            v["invoice_method"] = "manual"
            v["shipment_method"] = "manual"
            v["lines"] = [
                ["create", [self._line_values(ln, code) for ln in lines_by_sale[sale["id"]]]]
            ]
            values.append(v)
        created = c.call("sale.sale", "create", values)
        for sale, tid in zip(originals, created, strict=True):
            self.sale[sale["id"]] = tid
        live = [tid for sale, tid in zip(originals, created, strict=True)
                if sale["state"] != "cancelled"]  # fmt: skip
        c.call("sale.sale", "quote", live)
        c.call("sale.sale", "confirm", live)
        cancelled = [tid for sale, tid in zip(originals, created, strict=True)
                     if sale["state"] == "cancelled"]  # fmt: skip
        if cancelled:
            c.call("sale.sale", "cancel", cancelled)
        self.result.sales += len(created)

    def _return_sale_wizard(self, sale_id: int) -> int:
        c = self.client
        context = {**c.context, "active_model": "sale.sale", "active_id": sale_id,
                   "active_ids": [sale_id]}  # fmt: skip
        session, _, _ = c.call_method("wizard.sale.return_sale.create", [c.context])
        try:
            result = c.call_method(
                "wizard.sale.return_sale.execute", [session, {}, "return_", context]
            )
        finally:
            c.call_method("wizard.sale.return_sale.delete", [session, c.context])
        (_action, data) = result["actions"][0]
        (return_id,) = data["res_id"]
        return return_id

    def _return(self, ret: dict, lines: list[dict]) -> int | None:
        """The return order made by the wizard, shaped; its id when it is to be confirmed."""
        c = self.client
        s = self.s
        code = self.currency_code[ret["currency"]]
        origin_sale = int(ret["origin"].split(",")[1])
        if origin_sale not in self.sale:  # an order the simulator did not write: make it
            self._original_sales([s["sale_sale"][origin_sale]], {origin_sale: []})
        return_id = self._return_sale_wizard(self.sale[origin_sale])
        self.result.by_rma[ret["reference"]] = return_id
        # the wizard copied every line of the order, negated: keep what the customer returned
        copied = c.call(
            "sale.line", "search_read", [("sale", "=", return_id), ("type", "=", "line")], 0,
            None, [("id", "ASC")], ["product"],
        )  # fmt: skip
        free = defaultdict(list)
        for row in copied:
            free[row["product"]].append(row["id"])
        actions: list = []
        to_create = []
        kept = []
        for ln in lines:
            product = self.product[ln["product"]]
            values = self._line_values(ln, code, sign=-1)
            if free[product]:
                tid = free[product].pop(0)
                values.pop("taxes")
                values.pop("type")
                c.call("sale.line", "write", [tid], values)
                self.line[ln["id"]] = tid
                kept.append(tid)
            else:
                to_create.append((ln, values))
        leftovers = [i for ids in free.values() for i in ids]
        if leftovers:
            actions.append(["delete", leftovers])
        if to_create:
            actions.append(["create", [v for _, v in to_create]])
        c.call(
            "sale.sale", "write", [return_id],
            {"reference": ret["reference"], "sale_date": ret["sale_date"],
             "invoice_method": "order", "shipment_method": "order",
             **({"lines": actions} if actions else {})},
        )  # fmt: skip
        if to_create:
            now = c.call(
                "sale.line", "search_read", [("sale", "=", return_id), ("type", "=", "line")],
                0, None, [("id", "ASC")], ["id"],
            )  # fmt: skip
            new_ids = [r["id"] for r in now if r["id"] not in kept]
            for (ln, _), tid in zip(to_create, new_ids, strict=True):
                self.line[ln["id"]] = tid
        if ret["state"] in ("cancelled",):
            c.call("sale.sale", "cancel", [return_id])
            return None
        if ret["state"] == "draft":
            return None
        return return_id

    # -- stock ----------------------------------------------------------------------------------

    def _receive_and_post(self, ret: dict, lines: list[dict], return_id: int) -> None:
        """Receive Tryton's customer return shipment and put the goods away as the simulated
        moves say. Lines never put away go to a second shipment of the same return that is
        received and left there (Tryton finishes a shipment's moves together)."""
        c = self.client
        s = self.s
        shipments = [
            r for r in s.get("stock_shipment_out_return", {}).values()
            if r["reference"] == ret["reference"]
        ]  # fmt: skip
        sim_state = shipments[0]["state"] if shipments else "draft"
        effective = shipments[0]["effective_date"] if shipments else None
        line_refs = {f"sale.line,{ln['id']}": ln for ln in lines}
        done_moves: dict[int, list[dict]] = defaultdict(list)
        for mv in sorted(s.get("stock_move", {}).values(), key=lambda r: r["id"]):
            if mv["origin"] in line_refs and mv["state"] == "done":
                done_moves[line_refs[mv["origin"]]["id"]].append(mv)
        tryton_lines = {self.line[ln["id"]]: ln for ln in lines}
        incoming = c.call(
            "stock.move", "search_read",
            [("origin", "in", [f"sale.line,{t}" for t in tryton_lines]),
             ("shipment", "like", "stock.shipment.out.return,%")],
            0, None, [("id", "ASC")], ["shipment", "origin", "quantity"],
        )  # fmt: skip
        if not incoming:
            return
        shipment_ref = incoming[0]["shipment"]
        shipment_id = int(shipment_ref.split(",")[1])
        header: dict[str, Any] = {"reference": ret["reference"]}
        if effective:
            header["effective_date"] = effective
        if sim_state == "draft" and not done_moves:
            c.call(
                "stock.shipment.out.return", "write", [shipment_id], {"reference": ret["reference"]}
            )
            return  # not received yet

        def sim_line(move: dict) -> dict:
            return tryton_lines[int(move["origin"].split(",")[1])]

        # receive what came back: at least what is put away out of the input location later
        for mv in incoming:
            ln = sim_line(mv)
            posted = sum(float(m["quantity"]) for m in done_moves.get(ln["id"], []))
            quantity = max(abs(float(ln["quantity"])), posted)
            if quantity != mv["quantity"]:
                c.call("stock.move", "write", [mv["id"]], {"quantity": quantity})
        unposted = [mv for mv in incoming if not done_moves.get(sim_line(mv)["id"])]
        posted = [mv for mv in incoming if done_moves.get(sim_line(mv)["id"])]
        c.call("stock.shipment.out.return", "write", [shipment_id], header)
        if unposted and posted:
            # the lines left unposted: their own shipment, received and left there
            (rest,) = c.call(
                "stock.shipment.out.return", "copy", [shipment_id], {"moves": None}
            )  # fmt: skip
            c.call(
                "stock.move", "write", [mv["id"] for mv in unposted],
                {"shipment": f"stock.shipment.out.return,{rest}"},
            )  # fmt: skip
            c.call("stock.shipment.out.return", "write", [rest], header)
            call_accepting_warnings(c, "stock.shipment.out.return", "receive", [rest])
        call_accepting_warnings(c, "stock.shipment.out.return", "receive", [shipment_id])
        if not posted:
            return  # received, never put away: the shipment left unposted
        inventory = c.call(
            "stock.move", "search_read",
            [("shipment", "=", shipment_ref), ("origin", "like", "stock.move,%")],
            0, None, [("id", "ASC")], ["origin", "from_location", "product", "quantity"],
        )  # fmt: skip
        by_incoming = {int(m["origin"].split(",")[1]): m for m in inventory}
        for mv in posted:
            inv = by_incoming.get(mv["id"])
            if inv is None:
                continue
            for n, sim in enumerate(done_moves[sim_line(mv)["id"]]):
                values = {
                    "to_location": self.location[sim["to_location"]],
                    "quantity": float(sim["quantity"]),
                    "effective_date": sim["effective_date"] or effective,
                }
                if n == 0:
                    c.call("stock.move", "write", [inv["id"]], values)
                else:
                    c.call(
                        "stock.move", "create",
                        [{**values, "product": inv["product"], "unit": self.unit,
                          "from_location": inv["from_location"], "shipment": shipment_ref,
                          "origin": f"stock.move,{mv['id']}", "company": c.context["company"]}],
                    )  # fmt: skip
                self.result.moves_done += 1
        call_accepting_warnings(c, "stock.shipment.out.return", "do", [shipment_id])

    # -- credit notes ---------------------------------------------------------------------------

    def _credit_notes(self, ret: dict, lines: list[dict], return_id: int) -> None:
        c = self.client
        s = self.s
        line_refs = {f"sale.line,{ln['id']}" for ln in lines}
        inv_lines: dict[int, list[dict]] = defaultdict(list)
        for il in sorted(s.get("account_invoice_line", {}).values(), key=lambda r: r["id"]):
            if il["origin"] in line_refs:
                inv_lines[il["invoice"]].append(il)
        notes = sorted(
            (s["account_invoice"][i] for i in inv_lines if i in s.get("account_invoice", {})),
            key=lambda r: r["id"],
        )
        tryton_refs = [f"sale.line,{self.line[ln['id']]}" for ln in lines]
        own = c.call(
            "account.invoice.line", "search_read", [("origin", "in", tryton_refs)], 0, None,
            [("id", "ASC")], ["invoice", "origin", "account"],
        )  # fmt: skip
        own_invoice = own[0]["invoice"] if own else None
        account = own[0]["account"] if own else None
        primary = next((n for n in notes if n["state"] != "cancelled"), None)
        if own_invoice is not None and primary is None:
            # no credit note in the ERP for this return: the draft Tryton made was deleted
            c.call("account.invoice", "delete", [own_invoice])
            own_invoice = None
        for note in notes:
            if note is primary and own_invoice is not None:
                short = ret["reference"] in self.unit_short_rmas and note["state"] in (
                    "posted",
                    "paid",
                )
                self._shape_note(
                    own_invoice, note, inv_lines[note["id"]], own, account,
                    unit_short=ret["reference"] if short else None,
                )  # fmt: skip
            else:
                self._create_note(ret, note, inv_lines[note["id"]], account)
            self.result.credit_notes += 1

    def _note_line(self, il: dict, currency_code: str, account: int | None) -> dict:
        sim_line = self.s["sale_line"][int(il["origin"].split(",")[1])]
        tax = self.taxes.get(self.currency_code[self._sale_of(sim_line)["currency"]])
        return {
            "type": "line",
            "product": self.product[il["product"]] if il["product"] else None,
            "unit": self.unit,
            "quantity": float(il["quantity"]),
            "unit_price": Decimal(il["unit_price"]).quantize(Decimal("0.0001")),
            "origin": f"sale.line,{self.line[sim_line['id']]}",
            "account": account,
            "currency": self.currency[self.s["account_invoice"][il["invoice"]]["currency"]],
            "company": self.client.context["company"],
            "description": sim_line["description"] or "",
            "taxes": [["add", [tax]]] if tax else [],
        }

    def _sale_of(self, sim_line: dict) -> dict:
        return self.s["sale_sale"][sim_line["sale"]]

    def _shape_note(
        self,
        invoice: int,
        note: dict,
        sim_lines: list[dict],
        own: list,
        account,
        unit_short: str | None = None,
    ):
        """Tryton's own draft credit note made to say what the simulated one says.

        `unit_short` (an RMA): the credit note is too small the way a person makes it by
        crediting too few units (one unit fewer of a line, or a line left off) instead of by
        the simulated amount; Tryton's own total then stands (no correction line)."""
        c = self.client
        code = self.currency_code[note["currency"]]
        wanted = {f"sale.line,{self.line[int(il['origin'].split(',')[1])]}": il
                  for il in sim_lines}  # fmt: skip
        deletes, used = [], set()
        for row in own:
            if row["invoice"] != invoice:
                continue
            il = wanted.get(row["origin"])
            if il is None or row["origin"] in used:
                deletes.append(row["id"])
                continue
            used.add(row["origin"])
            c.call(
                "account.invoice.line", "write", [row["id"]],
                {"quantity": float(il["quantity"]),
                 "unit_price": Decimal(il["unit_price"]).quantize(Decimal("0.0001"))},
            )  # fmt: skip
        actions: list = []
        if deletes:
            actions.append(["delete", deletes])
        extra = [self._note_line(il, code, account) for o, il in wanted.items() if o not in used]
        if extra:
            actions.append(["create", extra])
        values: dict[str, Any] = {"invoice_date": note["invoice_date"]}
        if actions:
            values["lines"] = actions
        currency = self.currency[note["currency"]]
        if currency != c.call("account.invoice", "read", [invoice], ["currency"])[0]["currency"]:
            # the wrong currency picked (the lines follow the invoice's currency)
            values["currency"] = currency
            kept = [r["id"] for r in own if r["invoice"] == invoice and r["id"] not in deletes]
            if kept:
                values.setdefault("lines", []).append(["write", kept, {"currency": currency}])
        c.call("account.invoice", "write", [invoice], values)
        if unit_short is not None and self._credit_fewer_units(invoice, unit_short):
            self._finish_note(invoice, note, account, exact_total=False)
            return
        self._finish_note(invoice, note, account)

    def _credit_fewer_units(self, invoice: int, rma: str) -> bool:
        """One unit fewer credited on the first line of two or more units, else the last of two
        or more lines left off; False when the note has a single one-unit line."""
        c = self.client
        (full,) = c.call("account.invoice", "read", [invoice], ["total_amount"])
        lines = c.call(
            "account.invoice.line", "search_read",
            [("invoice", "=", invoice), ("type", "=", "line"), ("origin", "!=", None)],
            0, None, [("id", "ASC")], ["quantity", "product"],
        )  # fmt: skip
        two = next((ln for ln in lines if abs(ln["quantity"]) >= 2), None)
        if two is not None:
            what = f"credited one unit fewer of invoice line {two['id']}"
            quantity = two["quantity"] + (1 if two["quantity"] < 0 else -1)
            c.call("account.invoice.line", "write", [two["id"]], {"quantity": quantity})
        elif len(lines) >= 2:
            what = f"left invoice line {lines[-1]['id']} off the credit note"
            c.call("account.invoice.line", "delete", [lines[-1]["id"]])
        else:
            return False
        (now,) = c.call("account.invoice", "read", [invoice], ["total_amount"])
        # the channel refunded the full credit (Tryton's total of every unit with its taxes)
        self.result.unit_short[rma] = (what, abs(full["total_amount"]) - abs(now["total_amount"]))
        return True

    def _create_note(self, ret: dict, note: dict, sim_lines: list[dict], account) -> None:
        c = self.client
        code = self.currency_code[note["currency"]]
        sale = self.s["sale_sale"]
        ret_row = next(r for r in sale.values() if r["reference"] == ret["reference"])
        party = self.party[ret_row["party"]]
        (invoice,) = c.call(
            "account.invoice", "create",
            [{"type": "out", "party": party, "invoice_address": self.address[ret_row["party"]],
              "currency": self.currency[note["currency"]], "payment_term": self.payment_term,
              "invoice_date": note["invoice_date"], "reference": ret["reference"],
              "description": note["description"] or f"Credit note for return {ret['reference']}",
              "account": self._receivable(party), "journal": self._journal(),
              "lines": [["create", [self._note_line(il, code, account) for il in sim_lines]]]}],
        )  # fmt: skip
        self._finish_note(invoice, note, account)

    def _journal(self) -> int:
        if not hasattr(self, "_revenue_journal"):
            self._revenue_journal = _ids(
                self.client, "account.journal", [("type", "=", "revenue")]
            )[0]
        return self._revenue_journal

    def _receivable(self, party: int) -> int:
        rows = self.client.call("party.party", "read", [party], ["account_receivable"])
        if rows[0]["account_receivable"]:
            return rows[0]["account_receivable"]
        config = self.client.call(
            "account.configuration", "read", [1], ["default_account_receivable"]
        )
        return config[0]["default_account_receivable"]

    def _finish_note(self, invoice: int, note: dict, account, exact_total: bool = True) -> None:
        """Total made equal to the simulated one (a correction line without tax) unless
        `exact_total` is False, then the simulated state: posted (or paid: posted is what
        returnsync counts), cancelled, draft."""
        c = self.client
        want = note["total_amount_cache"]
        if want is not None and note["state"] != "draft" and exact_total:
            (row,) = c.call(
                "account.invoice", "read", [invoice], ["total_amount", "currency", "company"]
            )
            delta = Decimal(want) - row["total_amount"]
            if delta:
                c.call(
                    "account.invoice", "write", [invoice],
                    {"lines": [["create", [{
                        "type": "line", "quantity": 1.0, "unit_price": delta,
                        "account": account, "description": "Price correction",
                        "currency": row["currency"], "company": row["company"]}]]]},
                )  # fmt: skip
        if note["state"] in ("posted", "paid"):
            # posted at the end, in date order: Tryton numbers invoices in date order
            self.to_post.append((note["invoice_date"], note["id"], invoice))
        elif note["state"] == "cancelled":
            call_accepting_warnings(c, "account.invoice", "cancel", [invoice])
        elif note["state"] == "validated":
            call_accepting_warnings(c, "account.invoice", "validate_invoice", [invoice])


def load(
    landing, client, progress: Callable | None = None, unit_short_rmas: Iterable[str] = ()
) -> LoadResult:
    """Read the simulated ERP state of `landing` and write it into Tryton via `client`."""
    from returnsync_sim.tryton.state import read_erp_state

    return TrytonLoader(client, read_erp_state(landing), progress, unit_short_rmas).load()
