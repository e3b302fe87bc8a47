"""The finance report: open mismatches grouped in cases, money with its currency (DESIGN §11).

A **case** is one return: every mismatch of one RMA shares its `case_id` (an unmatched receipt
with no RMA is a case of its own). Within a case:

- **money at risk** is counted once per currency: the largest exposure of the case's money
  rows in that currency. A row's exposure is |channel refund - ERP credit| for
  `refund_without_credit` and `credit_amount_mismatch` (their |amount_delta|), the refund for
  `currency_mismatch`, the credit given for nothing received for `credit_without_receipt`, and
  the value of the over-credited units for `duplicate_credit`. Taking the largest, not the sum,
  is what keeps a second credit note from being counted by both `duplicate_credit` and
  `credit_amount_mismatch`;
- **goods at risk** is counted once per return line (RMA, product): max(units missing where they
  were inspected, units present beyond what was inspected) x the line's unit price. A line
  posted into the wrong location shows +960.10 `disposition_mismatch` and -960.10
  `receipt_not_posted`: 960.10 of goods at risk, once.

Each figure sits on exactly one row of its case, the first in report order (worst first) of the
rows it comes from, and is empty on the others: summing a column never counts money twice, and
the report's totals are those sums, per currency, never across currencies. Where
`reference/fx_rates.csv` has landed, each figure also has a company-currency value (the settings
seed's `company_currency`): the amount x the latest `rate_to_company` on or before the refund's
date (goods: the last inspection); with no such rate it is empty, never a guess.

Only RMA numbers, products, warehouses, quantities and amounts are shown: `recon.mismatches` and
the money facts hold no customer data. CSV goes through the one spreadsheet-safe writer,
`pipelines.lib.csvsafe`.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

import duckdb

from pipelines.lib.csvsafe import rows_to_csv, write_rows
from pipelines.lib.recon.catalog import CATALOG, Rule, by_name

FORMATS: tuple[str, ...] = ("csv", "md", "json")

# The report's columns, exactly and in this order (DESIGN §11; issue 21).
REPORT_COLUMNS: tuple[str, ...] = (
    "case_id",
    "mismatch_id",
    "rule",
    "rule_description",
    "severity",
    "rma_number",
    "sku",
    "warehouse",
    "location",
    "currency",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
    "money_at_risk",
    "goods_at_risk",
    "money_at_risk_company",
    "suggested_action",
    "adjustment_id",
    "adjustment_status",
    "first_seen_at",
    "last_seen_at",
    "status",
    "acknowledged_by",
    "acknowledged_at",
    "acknowledgement_note",
)

# the worst rows of a rule, as the Dagster checks show them
CHECK_COLUMNS: tuple[str, ...] = (
    "case_id",
    "rma_number",
    "sku",
    "location",
    "currency",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
    "money_at_risk",
    "goods_at_risk",
    "suggested_action",
    "status",
)

CENT = Decimal("0.01")
# per row, beside REPORT_COLUMNS (`add_figures`): the goods figure's currency and company value,
# and the currency of a figure that had no rate (what the totals add up, kept by the cache)
_HIDDEN = ("_goods_currency", "_goods_company", "_money_unconverted", "_goods_unconverted")
_AT_RISK = ("open", "acknowledged")  # statuses whose rows carry figures
_REFUND_RULES = frozenset({"refund_without_credit", "credit_amount_mismatch", "currency_mismatch"})
_CREDIT_RULES = frozenset({"credit_without_receipt"})
_LINE_RULES = frozenset({"duplicate_credit", "unmapped_sku"})


@dataclass
class Report:
    """The report's rows (dicts with `REPORT_COLUMNS`), totals per currency, and the
    company-currency totals (None when no rates or no company currency are known)."""

    rows: list[dict]
    totals_by_currency: dict[str, dict] = field(default_factory=dict)
    totals_company: dict | None = None


# -- reading -------------------------------------------------------------------------------------


# Within `catalog_read_once` (the cache's reads below): the tables and views of the connection,
# read in one query, and each table's columns read once; a catalog query costs 2-5 ms, and a
# refresh and its reads asked about 60 of them (issue 24). Nothing inside creates or drops the
# tables asked about (the cache's own table is created before).
_CATALOG: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "report_catalog", default=None
)


@contextlib.contextmanager
def catalog_read_once(con: duckdb.DuckDBPyConnection):
    """Inside: which tables exist and their columns are read once (the report assets wrap their
    reads in it; a table created inside is not seen by the report's readers)."""
    if _CATALOG.get() is not None:
        yield
        return
    names = {
        (schema, table)
        for schema, table in con.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    columns: dict[tuple[str, str], set[str]] = {}
    for schema, table, column in con.execute(
        "select table_schema, table_name, column_name from information_schema.columns"
    ).fetchall():
        columns.setdefault((schema, table), set()).add(column)
    token = _CATALOG.set({"con": con, "names": names, "columns": columns})
    try:
        yield
    finally:
        _CATALOG.reset(token)


def _snapshot(con: duckdb.DuckDBPyConnection) -> dict | None:
    found = _CATALOG.get()
    return found if found is not None and found["con"] is con else None


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    snapshot = _snapshot(con)
    if snapshot is not None:
        return (schema, table) in snapshot["names"]
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    snapshot = _snapshot(con)
    if snapshot is not None:
        return set(snapshot["columns"].get((schema, table), ()))
    return {
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }


@dataclass
class _Facts:
    return_currency: dict[str, str] = field(default_factory=dict)  # rma -> currency
    refunds: dict[str, dict[str, tuple[Decimal, datetime | None]]] = field(default_factory=dict)
    credits: dict[str, dict[str, tuple[Decimal, datetime | None]]] = field(default_factory=dict)
    lines: dict[tuple[str, str], tuple[str | None, datetime | None]] = field(default_factory=dict)
    adjustments: dict[str, dict] = field(default_factory=dict)  # mismatch -> its newest
    notes: dict[str, str] = field(default_factory=dict)  # mismatch -> note
    company_currency: str | None = None
    rates: dict[str, tuple[list[date], list[Decimal]]] = field(default_factory=dict)


def _read_facts(con: duckdb.DuckDBPyConnection, rows: Sequence[dict]) -> _Facts:
    """What the rows' figures need, from the tables that exist (a warehouse built before the
    money models, or a hand-made one, simply gives fewer figures)."""
    facts = _Facts()
    rmas = sorted({r["rma_number"] for r in rows if r.get("rma_number")})
    ids = [r["mismatch_id"] for r in rows]
    if rmas and _table_exists(con, "recon", "recon_return_money"):
        for rma, side, currency, amount, first_at in con.execute(
            "select rma_number, side, currency, amount, first_at from recon.recon_return_money "
            "where rma_number in (select unnest(?::varchar[]))",
            [rmas],
        ).fetchall():
            if side == "return":
                if currency:
                    facts.return_currency[rma] = currency
                continue
            book = facts.refunds if side == "refund" else facts.credits
            if currency and amount is not None:
                book.setdefault(rma, {})[currency] = (Decimal(amount), first_at)
    if rmas and _table_exists(con, "recon", "recon_line_money"):
        for rma, sku, currency, inspected_at in con.execute(
            "select rma_number, sku, currency, last_inspected_at from recon.recon_line_money "
            "where rma_number in (select unnest(?::varchar[]))",
            [rmas],
        ).fetchall():
            facts.lines[(rma, sku)] = (currency, inspected_at)
    if ids and _table_exists(con, "writeback", "adjustments"):
        # the newest adjustment of each mismatch: what the planner last decided
        cursor = con.execute(
            "select mismatch_id, adjustment_id, status, action, amount, quantity, currency "
            "from writeback.adjustments where mismatch_id in (select unnest(?::varchar[])) "
            "qualify row_number() over (partition by mismatch_id "
            "    order by created_at desc, updated_at desc, adjustment_id) = 1",
            [ids],
        )
        names = [d[0] for d in cursor.description]
        for found in cursor.fetchall():
            adjustment = dict(zip(names, found, strict=True))
            facts.adjustments[adjustment["mismatch_id"]] = adjustment
    if ids and "acknowledgement_note" in _columns(con, "recon", "mismatches"):
        # migration 4 (acknowledge --note); older warehouses have no notes
        for mismatch_id, note in con.execute(
            "select mismatch_id, acknowledgement_note from recon.mismatches "
            "where acknowledgement_note is not null "
            "and mismatch_id in (select unnest(?::varchar[]))",
            [ids],
        ).fetchall():
            facts.notes[mismatch_id] = note
    facts.company_currency = company_currency(con)
    facts.rates = read_rates(con)
    return facts


def company_currency(con: duckdb.DuckDBPyConnection) -> str | None:
    """The settings seed's `company_currency` (its currency column), if set."""
    if not _table_exists(con, "seeds", "recon_settings"):
        return None
    if "currency" not in _columns(con, "seeds", "recon_settings"):
        return None
    row = con.execute(
        "select max(upper(trim(currency))) from seeds.recon_settings "
        "where setting = 'company_currency'"
    ).fetchone()
    return row[0] if row and row[0] else None


def read_rates(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[list[date], list[Decimal]]]:
    """currency -> (dates ascending, rates) from the current reference/fx_rates.csv."""
    if not _table_exists(con, "staging", "stg_reference__fx_rates"):
        return {}
    try:
        found = con.execute(
            "select currency, rate_date, rate_to_company from staging.stg_reference__fx_rates "
            "order by currency, rate_date"
        ).fetchall()
    except duckdb.Error:  # a view over a raw table this warehouse does not have
        return {}
    rates: dict[str, tuple[list[date], list[Decimal]]] = {}
    for currency, day, rate in found:
        dates, values = rates.setdefault(currency, ([], []))
        dates.append(day)
        values.append(Decimal(rate))
    return rates


def rate_on(
    rates: dict[str, tuple[list[date], list[Decimal]]],
    currency: str,
    day: date | datetime | None,
    company: str | None,
) -> Decimal | None:
    """The latest rate of `currency` on or before `day`; 1 for the company currency; None when
    there is none (never a guess)."""
    if company is None or not currency:
        return None
    if currency == company:
        return Decimal(1)
    if day is None or currency not in rates:
        return None
    if isinstance(day, datetime):
        day = day.date()
    dates, values = rates[currency]
    at = bisect.bisect_right(dates, day)
    return values[at - 1] if at else None


# -- figures -------------------------------------------------------------------------------------


def case_id_for(rma_number: str | None, mismatch_id: str) -> str:
    """`case-` + 12 hex of the RMA (upper-cased): every mismatch of one return shares it; a
    mismatch without an RMA (a receipt scanned with none) is a case of its own."""
    key = f"rma\n{rma_number.strip().upper()}" if rma_number else f"mismatch\n{mismatch_id}"
    return "case-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _rule(name: str, catalog: dict[str, Rule]) -> Rule | None:
    return catalog.get(name)


def _family(name: str, catalog: dict[str, Rule]) -> str:
    entry = catalog.get(name)
    return entry.family if entry else ""


def _one(book: dict[str, tuple[Decimal, datetime | None]] | None) -> str | None:
    return min(book) if book else None


def row_currency(row: dict, facts: _Facts, catalog: dict[str, Rule]) -> str | None:
    """The currency of a row's amounts: the refund's for the refund rules, the credit's for a
    credit given for nothing received, the line's for line rules, else the return's."""
    rule, rma, sku = row["rule"], row.get("rma_number"), row.get("sku")
    if rule == "unmatched_receipt" or not rma:
        return None
    family = _family(rule, catalog)
    if rule in _REFUND_RULES:
        found = _one(facts.refunds.get(rma)) or _one(facts.credits.get(rma))
    elif rule in _CREDIT_RULES:
        found = _one(facts.credits.get(rma)) or _one(facts.refunds.get(rma))
    elif family == "stock" or rule in _LINE_RULES:
        found = facts.lines.get((rma, sku), (None, None))[0]
    elif family == "money":
        found = _one(facts.refunds.get(rma)) or _one(facts.credits.get(rma))
    else:
        found = None
    return found or facts.return_currency.get(rma)


def _money_exposures(
    row: dict, currency: str | None, facts: _Facts
) -> list[tuple[str, Decimal, datetime | None]]:
    """(currency, amount, date to convert at) of a money row's exposure."""
    rule, rma = row["rule"], row.get("rma_number")
    refunds = facts.refunds.get(rma or "", {})
    credits = facts.credits.get(rma or "", {})
    if rule == "currency_mismatch":  # the refund, in the refund's currency (or currencies)
        return [(c, amount, at) for c, (amount, at) in sorted(refunds.items())]
    delta = _dec(row.get("amount_delta"))
    if delta is None or currency is None:
        return []
    if rule in _CREDIT_RULES:
        at = credits.get(currency, (None, None))[1]
    else:
        at = refunds.get(currency, (None, None))[1] or credits.get(currency, (None, None))[1]
    return [(currency, abs(delta), at)]


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def add_figures(
    rows: list[dict], facts: _Facts, catalog: tuple[Rule, ...] = CATALOG
) -> tuple[dict[str, dict], dict | None]:
    """Fill every row's case, currency and figures in place (rows in report order); returns the
    totals per currency and in the company currency."""
    rules = by_name(catalog)
    money: dict[tuple[str, str], tuple[Decimal, datetime | None]] = {}  # (case, cur) -> max
    goods: dict[tuple[str, str], dict] = {}  # (case, sku) -> missing/excess/currency
    for row in rows:
        row["case_id"] = case_id_for(row.get("rma_number"), row["mismatch_id"])
        row["currency"] = row_currency(row, facts, rules)
        entry = _rule(row["rule"], rules)
        row["rule_description"] = entry.description if entry else None
        adjustment = facts.adjustments.get(row["mismatch_id"])
        row["adjustment_id"] = adjustment["adjustment_id"] if adjustment else None
        row["adjustment_status"] = adjustment["status"] if adjustment else None
        if row.get("acknowledgement_note") is None:
            row["acknowledgement_note"] = facts.notes.get(row["mismatch_id"])
        row["money_at_risk"] = row["goods_at_risk"] = row["money_at_risk_company"] = None
        for hidden in _HIDDEN:  # what the totals need beside the row's columns (cache below)
            row[hidden] = None
        row["suggested_action"] = suggested_action(row, entry, adjustment)
        if row.get("status") not in _AT_RISK:
            continue
        family = _family(row["rule"], rules)
        if family == "money":
            for currency, amount, at in _money_exposures(row, row["currency"], facts):
                key = (row["case_id"], currency)
                if key not in money or amount > money[key][0]:
                    money[key] = (amount, at)
        elif family == "stock" and row.get("sku"):
            delta = _dec(row.get("amount_delta"))
            qty = _dec(row.get("qty_delta"))
            if delta is None or qty is None or not row["currency"]:
                continue
            line = goods.setdefault(
                (row["case_id"], row["sku"]),
                {"missing": Decimal(0), "excess": Decimal(0), "currency": row["currency"]},
            )
            line["missing" if qty < 0 else "excess"] += abs(delta)

    # place each figure on the first row (report order) it comes from
    currencies: dict[str, list[str]] = {}  # case -> its money currencies, in order
    for case, currency in money:
        currencies.setdefault(case, []).append(currency)
    placed_money: set[tuple[str, str]] = set()
    placed_goods: set[tuple[str, str]] = set()
    company = facts.company_currency
    totals: dict[str, dict] = {}
    company_totals = {"money_at_risk": Decimal(0), "goods_at_risk": Decimal(0)}
    unconverted: dict[str, set[str]] = {"money_at_risk": set(), "goods_at_risk": set()}

    def total(currency: str) -> dict:
        return totals.setdefault(
            currency,
            {"money_at_risk": Decimal(0), "goods_at_risk": Decimal(0), "cases": set()},
        )

    for row in rows:
        if row.get("status") not in _AT_RISK:
            continue
        case, family = row["case_id"], _family(row["rule"], rules)
        if family == "money":
            keys = [(case, c) for c in currencies.get(case, ()) if (case, c) not in placed_money]
            mine = [k for k in keys if k[1] == row["currency"]] or (
                keys if row["rule"] == "currency_mismatch" else []
            )
            for key in mine[:1]:
                amount, at = money[key]
                placed_money.add(key)
                row["money_at_risk"] = _cents(amount)
                if key[1] != row["currency"]:
                    row["currency"] = key[1]
                t = total(key[1])
                t["money_at_risk"] += row["money_at_risk"]
                t["cases"].add(case)
                rate = rate_on(facts.rates, key[1], at, company)
                if rate is None:
                    unconverted["money_at_risk"].add(key[1])
                    row["_money_unconverted"] = key[1]
                else:
                    row["money_at_risk_company"] = _cents(amount * rate)
                    company_totals["money_at_risk"] += row["money_at_risk_company"]
        elif family == "stock" and row.get("sku"):
            key = (case, row["sku"])
            if key in goods and key not in placed_goods:
                placed_goods.add(key)
                line = goods[key]
                value = _cents(max(line["missing"], line["excess"]))
                row["goods_at_risk"] = value
                row["_goods_currency"] = line["currency"]
                t = total(line["currency"])
                t["goods_at_risk"] += value
                t["cases"].add(case)
                at = facts.lines.get((row.get("rma_number"), row["sku"]), (None, None))[1]
                rate = rate_on(facts.rates, line["currency"], at, company)
                if rate is None:
                    unconverted["goods_at_risk"].add(line["currency"])
                    row["_goods_unconverted"] = line["currency"]
                else:
                    row["_goods_company"] = _cents(value * rate)
                    company_totals["goods_at_risk"] += row["_goods_company"]

    for row in rows:
        if row.get("currency"):
            total(row["currency"]).setdefault("rows", 0)
            total(row["currency"])["rows"] += 1
    by_currency = {
        c: {
            "money_at_risk": t["money_at_risk"],
            "goods_at_risk": t["goods_at_risk"],
            "cases": len(t["cases"]),
            "rows": t.get("rows", 0),
        }
        for c, t in sorted(totals.items())
    }
    company_view = None
    if company and facts.rates:
        company_view = {
            "currency": company,
            "money_at_risk": company_totals["money_at_risk"],
            "goods_at_risk": company_totals["goods_at_risk"],
            # currencies with a figure that had no rate on or before its date: not in the sums
            "not_converted": {k: sorted(v) for k, v in unconverted.items() if v},
        }
    return by_currency, company_view


# -- suggested actions ---------------------------------------------------------------------------


def _qty(value: object) -> str:
    if value is None:
        return "?"
    return format(Decimal(str(value)).normalize(), "f")


def _units(value: object) -> str:
    text = _qty(value)
    return f"{text} unit" if text == "1" else f"{text} units"


def _amount(value: object, currency: str | None) -> str:
    if value is None:
        return "?"
    text = format(_cents(abs(Decimal(str(value)))), "f")
    return f"{text} {currency}" if currency else text


# the write-back's actions (pipelines/lib/erp/base.py; older warehouses: stock_move,
# credit_note) in plain words
ACTION_WORDS: dict[str, str] = {
    "stock_move": "post the return shipment",
    "create_return_shipment": "post a return shipment",
    "finish_return_shipment": "finish the return shipment",
    "internal_move": "move",
    "credit_note": "issue a credit note",
    "create_credit_note": "issue a credit note",
    "post_draft_credit_note": "post the draft credit note",
}
ADJUSTMENT_STATUS_WORDS: dict[str, str] = {
    "planned": "waits for a person: returnsync approve {id}",
    "approved": "approved, waits for the push",
    "sent": "sent to the ERP",
    "exception": "the ERP did not take it: see returnsync exceptions",
}


def _adjustment_action(row: dict, adjustment: dict) -> str | None:
    """The planned adjustment in plain words, with where it stands; None when there is none to
    show (rejected, or an action without words)."""
    words = ACTION_WORDS.get(adjustment.get("action") or "")
    status = ADJUSTMENT_STATUS_WORDS.get(adjustment.get("status") or "")
    if words is None or status is None:
        return None
    loc = row.get("location") or row.get("warehouse")
    if adjustment.get("amount") is not None and "credit" in adjustment["action"]:
        detail = f" for {_amount(adjustment['amount'], adjustment.get('currency'))}"
    elif adjustment["action"] == "internal_move":
        qty = adjustment.get("quantity") or row.get("actual")
        detail = f" the {_units(qty)} posted into {loc} to where they were inspected"
    else:
        qty = adjustment.get("quantity") or _dec(row.get("qty_delta"))
        detail = f" for {_units(abs(Decimal(str(qty))) if qty is not None else None)}"
        detail += f" into {loc}" if loc else ""
    return f"{words}{detail} ({status.format(id=adjustment.get('adjustment_id'))})"


def suggested_action(row: dict, entry: Rule | None = None, adjustment: dict | None = None) -> str:
    """What to do about a mismatch, in plain words: the adjustment planned for it and where it
    stands, else the automatic fix it would get, or why a person must act."""
    if adjustment is not None:
        planned = _adjustment_action(row, adjustment)
        if planned is not None:
            return planned
    rule = row["rule"]
    loc = row.get("location") or row.get("warehouse") or "its location"
    qty = _dec(row.get("qty_delta"))
    cur = row.get("currency")
    if rule == "receipt_not_posted":
        return f"post the return shipment for {_units(row.get('expected'))} into {loc}"
    if rule == "posted_qty_mismatch":
        if qty is not None and qty < 0:
            return f"post the return shipment for {_units(-qty)} more into {loc}"
        return f"needs a person: {_units(qty)} more posted into {loc} than inspected (reverse them)"
    if rule == "disposition_mismatch":
        return (
            f"needs a person: {_units(row.get('actual'))} posted into {loc} where none were "
            "inspected (move or reverse them)"
        )
    if rule == "refund_without_credit":
        return f"issue a credit note for {_amount(row.get('expected'), cur)}"
    if rule == "credit_amount_mismatch":
        delta = _dec(row.get("amount_delta"))
        if delta is not None and delta < 0:
            return f"issue a credit note for the missing {_amount(delta, cur)}"
        return f"needs a person: credited {_amount(delta, cur)} more than the channel refunded"
    if rule == "currency_mismatch":
        return (
            f"needs a person: refunded in {row.get('expected') or '?'}, "
            f"credited in {row.get('actual') or '?'}"
        )
    if rule == "duplicate_credit":
        return (
            f"needs a person: credited twice ({_qty(row.get('actual'))} credited, "
            f"{_qty(row.get('expected'))} authorized)"
        )
    if rule == "credit_without_receipt":
        return (
            f"needs a person: credited {_amount(row.get('amount_delta'), cur)} but nothing was "
            "received (chase the return or reverse the credit)"
        )
    if rule == "unmatched_receipt":
        return f"needs a person: find the return of the {_units(qty)} received"
    if rule == "unmapped_sku":
        return f"add {row.get('sku') or 'the channel SKU'} to the SKU crosswalk"
    if entry is not None and entry.exception_reason:
        return f"needs a person: {entry.exception_reason}"
    if entry is not None and entry.auto_fix_action:
        return f"approve the planned {entry.auto_fix_action.replace('_', ' ')}"
    return "needs a person"


# -- building and formatting ---------------------------------------------------------------------


def build_report(
    con: duckdb.DuckDBPyConnection,
    status: str = "open",
    rule: str | None = None,
    catalog: tuple[Rule, ...] = CATALOG,
) -> Report:
    """The report of `status` mismatches (`open`, `acknowledged`, `resolved` or `all`), worst
    first, with cases, currencies, figures, actions and totals. Raises `LookupError` when the
    reconciliation never ran."""
    from pipelines.lib.recon.lifecycle import list_mismatches

    rows = [dict(r) for r in list_mismatches(con, status=status, rule=rule)]
    return report_from_rows(con, rows, catalog)


def report_from_rows(
    con: duckdb.DuckDBPyConnection, rows: list[dict], catalog: tuple[Rule, ...] = CATALOG
) -> Report:
    facts = _read_facts(con, rows)
    by_currency, company = add_figures(rows, facts, catalog)
    return Report([{c: r.get(c) for c in REPORT_COLUMNS} for r in rows], by_currency, company)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def to_csv(rows: Iterable[dict], columns: Sequence[str] = REPORT_COLUMNS) -> str:
    """Spreadsheet-safe CSV (`pipelines.lib.csvsafe`): a text cell that a spreadsheet would run
    as a formula (a SKU `=HYPERLINK(...)` from a B2B file) starts with `'`; numbers stay."""
    return rows_to_csv(columns, ([_text(row.get(c)) for c in columns] for row in rows))


def _md_cell(value: object) -> str:
    return _text(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Iterable[dict], columns: Sequence[str] = REPORT_COLUMNS) -> str:
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _plain(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _text(value)


def totals_dict(report: Report) -> dict:
    out: dict = {"totals_by_currency": _plain(report.totals_by_currency)}
    if report.totals_company is not None:
        out["totals_company"] = _plain(report.totals_company)
    return out


def to_json(report: Report, columns: Sequence[str] = REPORT_COLUMNS) -> str:
    """`{"rows": [...], "totals_by_currency": {...}}` (and `totals_company` when rates exist);
    money and quantities as exact decimal strings, times as ISO-8601."""
    data = {
        "rows": [{c: _plain(row.get(c)) for c in columns} for row in report.rows],
        **totals_dict(report),
    }
    return json.dumps(data, indent=2) + "\n"


def totals_markdown(report: Report) -> str:
    lines = [
        "| currency | money_at_risk | goods_at_risk | cases | rows |",
        "|---|---|---|---|---|",
    ]
    for currency, t in report.totals_by_currency.items():
        lines.append(
            f"| {currency} | {_text(t['money_at_risk'])} | {_text(t['goods_at_risk'])} "
            f"| {t['cases']} | {t['rows']} |"
        )
    text = "\n".join(lines) + "\n"
    company = report.totals_company
    if company is not None:
        text += (
            f"\nIn {company['currency']} (company currency): money at risk "
            f"{_text(company['money_at_risk'])}, goods at risk {_text(company['goods_at_risk'])}"
        )
        missing = sorted({c for v in company["not_converted"].values() for c in v})
        if missing:
            text += f" (no rate for {', '.join(missing)}: not included)"
        text += "\n"
    return text


def render(report: Report, fmt: str, columns: Sequence[str] = REPORT_COLUMNS) -> str:
    if fmt == "csv":
        return to_csv(report.rows, columns)
    if fmt == "md":
        return to_markdown(report.rows, columns) + "\n" + totals_markdown(report)
    if fmt == "json":
        return to_json(report, columns)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def money_by_currency(rows: Iterable[dict], column: str = "money_at_risk") -> dict[str, Decimal]:
    """Sum of a figure column per currency (rows whose figure is empty add nothing)."""
    sums: dict[str, Decimal] = {}
    for row in rows:
        value = row.get(column)
        if value is not None and row.get("currency"):
            sums[row["currency"]] = sums.get(row["currency"], Decimal(0)) + Decimal(value)
    return dict(sorted(sums.items()))


def rule_summary(rows: Sequence[dict], catalog: tuple[Rule, ...] = CATALOG) -> list[dict]:
    """One entry per rule of the catalog, in its order: severity, count, the money and goods at
    risk its rows carry per currency (`{"EUR": ..., ...}`) and the rule's description."""
    summary = []
    for entry in catalog:
        mine = [r for r in rows if r["rule"] == entry.rule]
        summary.append(
            {
                "rule": entry.rule,
                "severity": entry.severity,
                "count": len(mine),
                "money_at_risk": money_by_currency(mine, "money_at_risk"),
                "goods_at_risk": money_by_currency(mine, "goods_at_risk"),
                "description": entry.description,
            }
        )
    return summary


# -- the open report kept current: only the cases that changed are computed (issue 24) -----------
#
# Every increment reported every open mismatch twice (the lifecycle's checks, then the report
# asset), each time in Python, row by row: a cost that grew with the open history, not with what
# the increment changed. `CACHE` keeps the open report's rows as the last refresh computed them,
# each case (every row of a return) with a fingerprint of everything its rows are made of: its
# open mismatch rows, the money facts of its RMA numbers, the newest adjustment of each row,
# and what every row depends on (the catalog, the company currency, the rates, which tables
# exist, the session's time zone, this code's version). A refresh computes the fingerprints in
# SQL, recomputes in Python only the cases whose fingerprint is new (the figures are per case,
# so a case computed alone gives the rows the whole report gives), and drops the cases no longer
# open. What the report asset writes then comes from the cache in SQL: the CSV (each row's CSV
# line is cached, in report order), the totals per currency and the rule summaries; the few rows
# shown inline are computed again with their cases. The result is what `build_report(con)`
# gives for the open mismatches (tests/recon/test_incremental_report.py); the CSV is the one
# part that still costs every open row (it holds every open row), in SQL.
#
# A cache, not a record (rebuilt whole when missing or emptied), in its own schema, which is
# never published (pipelines.lib.publish publishes `marts` and `recon` only).

CACHE = "report_cache.open_mismatches"
# Bump when how a row is computed changes in a way the fingerprints cannot see (this module).
REPORT_VERSION = "2"
_CACHE_DDL = f"""
create schema if not exists report_cache;
create table if not exists {CACHE} (
    case_id varchar, fingerprint ubigint, mismatch_id varchar, rma_number varchar,
    rule varchar, currency varchar, money_at_risk varchar, goods_at_risk varchar,
    money_at_risk_company varchar, goods_currency varchar, goods_company varchar,
    money_unconverted varchar, goods_unconverted varchar, line_head varchar, line_tail varchar,
    last_seen_text varchar
)
"""
_CACHE_VALUES = (
    "case_id", "fingerprint", "mismatch_id", "rma_number", "rule", "currency", "money_at_risk",
    "goods_at_risk", "money_at_risk_company", "_goods_currency", "_goods_company",
    "_money_unconverted", "_goods_unconverted", "line_head", "line_tail",
    "last_seen_text",
)  # fmt: skip
# `last_seen_at` moves with every run's as_of on every open row, and nothing but its own cell
# depends on it: the cache keeps each CSV line without it (head and tail) and the CSV puts in the
# mismatch's current value, written in SQL as Python's `isoformat` writes it. That is exact for
# UTC times of years 1000-9999 (`_SPLICED`); any other value stays part of its row's fingerprint.
_SPLICED = (
    "(current_setting('TimeZone') in ('UTC', 'Etc/UTC') and year({ts}) between 1000 and 9999)"
)
_ISO_SQL = (
    "strftime({ts}, '%Y-%m-%dT%H:%M:%S') || case when microsecond({ts}) % 1000000 = 0 "
    "then '' else '.' || lpad((microsecond({ts}) % 1000000)::varchar, 6, '0') end || '+00:00'"
)


@dataclass
class CacheRefresh:
    """What one refresh did: cases computed again, cases dropped, cases and rows now open."""

    recomputed_cases: int
    recomputed_rows: int
    dropped_cases: int
    cases: int
    rows: int


def _global_fingerprint(con: duckdb.DuckDBPyConnection, catalog: tuple[Rule, ...]) -> str:
    """What every row depends on beside its case's own data."""
    tables = {
        "return_money": _table_exists(con, "recon", "recon_return_money"),
        "line_money": _table_exists(con, "recon", "recon_line_money"),
        "adjustments": _table_exists(con, "writeback", "adjustments"),
        "notes": "acknowledgement_note" in _columns(con, "recon", "mismatches"),
    }
    rates = read_rates(con)
    return json.dumps(
        {
            "version": REPORT_VERSION,
            "catalog": [repr(r) for r in catalog],
            "actions": [ACTION_WORDS, ADJUSTMENT_STATUS_WORDS],
            "company": company_currency(con),
            "rates": {c: [[d.isoformat() for d in ds], [str(v) for v in vs]]
                      for c, (ds, vs) in sorted(rates.items())},
            "tables": tables,
            "tz": con.execute("select current_setting('TimeZone')").fetchone()[0],
        },
        sort_keys=True,
    )  # fmt: skip


def _case_fingerprints(con: duckdb.DuckDBPyConnection, global_fp: str) -> None:
    """`_rep_open` (every open row: mismatch_id, rma_number, case_id) and `_rep_fp` (case_id,
    fingerprint): the fingerprint of each open case."""
    from pipelines.lib.recon.lifecycle import REPORT_COLUMNS as ROW_COLUMNS

    con.execute(
        f"""
        create or replace temp table _rep_open as
        select m.mismatch_id, m.rma_number, c.case_id,
               hash({", ".join(f"m.{c}" for c in ROW_COLUMNS if c != "last_seen_at")},
                    case when {_SPLICED.format(ts="m.last_seen_at")} then null
                    else m.last_seen_at end) as h
        from recon.mismatches as m
        left join (select distinct mismatch_id, rma_number, case_id from {CACHE}) as c
            on c.mismatch_id = m.mismatch_id and c.rma_number is not distinct from m.rma_number
        where m.status = 'open'
        """
    )
    new = con.execute(
        "select mismatch_id, rma_number from _rep_open where case_id is null"
    ).fetchall()
    if new:  # the case of a row not cached yet: in Python (`case_id_for`), as the report does
        con.execute(
            "create or replace temp table _rep_new_case as select unnest(?::varchar[]) as "
            "mismatch_id, unnest(?::varchar[]) as case_id",
            [[m for m, _ in new], [case_id_for(r, m) for m, r in new]],
        )
        con.execute(
            "update _rep_open as o set case_id = n.case_id from _rep_new_case as n "
            "where o.mismatch_id = n.mismatch_id"
        )
        con.execute("drop table _rep_new_case")
    adjustments = "select null::varchar as mismatch_id, 0::ubigint as h where false"
    if _table_exists(con, "writeback", "adjustments"):
        adjustments = """
            select mismatch_id, hash(adjustment_id, status, action, amount, quantity, currency) as h
            from writeback.adjustments where mismatch_id in (select mismatch_id from _rep_open)
            qualify row_number() over (partition by mismatch_id
                order by created_at desc, updated_at desc, adjustment_id) = 1
        """
    facts = []
    if _table_exists(con, "recon", "recon_return_money"):
        facts.append(
            "select rma_number, hash('return', side, currency, amount, first_at) as h "
            "from recon.recon_return_money where rma_number in (select rma_number from _rep_open)"
        )
    if _table_exists(con, "recon", "recon_line_money"):
        facts.append(
            "select rma_number, hash('line', sku, currency, last_inspected_at) as h "
            "from recon.recon_line_money where rma_number in (select rma_number from _rep_open)"
        )
    facts_sql = " union all ".join(facts) or (
        "select null::varchar as rma_number, 0::ubigint as h where false"
    )
    con.execute(
        f"""
        create or replace temp table _rep_fp as
        with adj as ({adjustments}),
        fact as (select rma_number, sum(h::hugeint) as h, count(*) as n
                 from ({facts_sql}) group by 1),
        row_part as (
            select o.case_id, sum(hash(o.h, coalesce(a.h, 0))::hugeint) as h, count(*) as n
            from _rep_open as o left join adj as a using (mismatch_id) group by 1
        ),
        fact_part as (
            select r.case_id, sum(hash(r.rma_number, f.h, f.n)::hugeint) as h
            from (select distinct case_id, rma_number from _rep_open
                  where rma_number is not null) as r
            join fact as f using (rma_number) group by 1
        )
        select r.case_id, hash(?, r.h, r.n, coalesce(f.h, 0)) as fingerprint
        from row_part as r left join fact_part as f using (case_id)
        """,
        [global_fp],
    )


def refresh_open_report(
    con: duckdb.DuckDBPyConnection, catalog: tuple[Rule, ...] = CATALOG
) -> CacheRefresh:
    """Bring the cache of the open report up to date (see above), in one transaction: only the
    cases whose fingerprint changed are computed again. Raises `LookupError` when the
    reconciliation never ran."""
    from pipelines.lib.recon.lifecycle import MISMATCHES_TABLE

    if not _table_exists(con, "recon", "mismatches"):  # as list_mismatches says it
        raise LookupError(f"{MISMATCHES_TABLE} is missing: run the reconciliation first")
    schema, table = CACHE.split(".")
    if _columns(con, schema, table) - {"fingerprint"} not in (
        set(),
        {c.removeprefix("_") for c in _CACHE_VALUES} - {"fingerprint"},
    ):  # a cache of another version of this module: started again
        con.execute(f"drop table {CACHE}")
    con.execute(_CACHE_DDL)
    with catalog_read_once(con):
        return _refresh(con, catalog)


def _refresh(con: duckdb.DuckDBPyConnection, catalog: tuple[Rule, ...]) -> CacheRefresh:
    from pipelines.lib.recon.lifecycle import list_mismatches

    _case_fingerprints(con, _global_fingerprint(con, catalog))
    con.execute("begin transaction")
    try:
        con.execute(
            f"""
            create or replace temp table _rep_changed as
            select f.case_id, f.fingerprint from _rep_fp as f
            where not exists (select 1 from {CACHE} as c
                              where c.case_id = f.case_id and c.fingerprint = f.fingerprint)
            """
        )
        dropped = con.execute(
            f"""
            select count(distinct case_id) from {CACHE}
            where case_id not in (select case_id from _rep_fp)
            """
        ).fetchone()[0]
        con.execute(
            f"""
            delete from {CACHE} where case_id in (select case_id from _rep_changed)
               or case_id not in (select case_id from _rep_fp)
            """
        )
        con.execute(
            "create or replace temp table _rep_rows as select o.mismatch_id from _rep_open as o "
            "where o.case_id in (select case_id from _rep_changed)"
        )
        rows = [dict(r) for r in list_mismatches(con, status="open", only="_rep_rows")]
        if rows:
            facts = _read_facts(con, rows)
            add_figures(rows, facts, catalog)
            fingerprints = dict(
                con.execute("select case_id, fingerprint from _rep_changed").fetchall()
            )
            values: list[list] = [[] for _ in _CACHE_VALUES]
            mark = f"\x1f{uuid.uuid4().hex}\x1f"  # in place of last_seen_at: no quoting
            marked = [{**row, "last_seen_at": mark} for row in rows]
            for row, line, whole in zip(rows, _csv_lines(marked), _csv_lines(rows), strict=True):
                row["fingerprint"] = fingerprints[row["case_id"]]
                row["line_head"], row["line_tail"] = head, tail = line.split(mark)
                row["last_seen_text"] = whole[len(head) : len(whole) - len(tail)]
                for i, name in enumerate(_CACHE_VALUES):
                    value = row.get(name)
                    values[i].append(value if value is None or i == 1 else str(value))
            con.execute(
                f"insert into {CACHE} select "
                + ", ".join(
                    f"unnest(?::{'ubigint' if i == 1 else 'varchar'}[])"
                    for i in range(len(_CACHE_VALUES))
                ),
                values,
            )
        refresh = CacheRefresh(
            recomputed_cases=con.execute("select count(*) from _rep_changed").fetchone()[0],
            recomputed_rows=len(rows),
            dropped_cases=int(dropped),
            cases=con.execute("select count(*) from _rep_fp").fetchone()[0],
            rows=con.execute("select count(*) from _rep_open").fetchone()[0],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        for table in ("_rep_open", "_rep_fp", "_rep_changed", "_rep_rows"):
            con.execute(f"drop table if exists {table}")
    return refresh


class _Lines(list):
    """A text sink that keeps each `write` apart: `write_rows` writes one line per call."""

    def write(self, text: str) -> None:
        self.append(text)


def _csv_lines(rows: list[dict], columns: Sequence[str] = REPORT_COLUMNS) -> list[str]:
    """Each row's line of `to_csv(rows)` (the same writer, without the header)."""
    lines = _Lines()
    write_rows(lines, columns, ([_text(row.get(c)) for c in columns] for row in rows))
    return lines[1:]


def _cached_order() -> str:
    from pipelines.lib.recon.lifecycle import REPORT_ORDER_M

    return REPORT_ORDER_M


def cached_csv(con: duckdb.DuckDBPyConnection) -> str:
    """The open report as CSV (`to_csv(build_report(con).rows)`), from the refreshed cache."""
    lines = con.execute(
        f"""
        select coalesce(string_agg(c.line_head
            || case when {_SPLICED.format(ts="m.last_seen_at")}
                    then {_ISO_SQL.format(ts="m.last_seen_at")} else c.last_seen_text end
            || c.line_tail, '' order by {_cached_order()}), '')
        from {CACHE} as c join recon.mismatches as m using (mismatch_id)
        """
    ).fetchone()[0]
    return to_csv([]) + lines


def _dec_or_zero(value: object) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def cache_is_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the cache holds exactly the open report: the same cases, each with the fingerprint
    `refresh_open_report` would give it now (its own test of what to recompute), so that
    `cached_totals` are `build_report(con, status="open")`'s. Read-only: the fingerprints go to
    temporary tables, dropped afterwards. False after an `acknowledge` (it changes the open rows
    without refreshing the cache), without a cache, or with another version's."""
    schema, table = CACHE.split(".")
    if not _table_exists(con, schema, table):
        return False
    if _columns(con, schema, table) != {c.removeprefix("_") for c in _CACHE_VALUES}:
        return False
    try:
        with catalog_read_once(con):
            _case_fingerprints(con, _global_fingerprint(con, CATALOG))
        changed, dropped = con.execute(
            f"""
            select
                (select count(*) from _rep_fp as f where not exists (
                    select 1 from {CACHE} as c
                    where c.case_id = f.case_id and c.fingerprint = f.fingerprint)),
                (select count(*) from {CACHE} as c
                 where c.case_id not in (select case_id from _rep_fp)
                    or c.mismatch_id not in (select mismatch_id from _rep_open))
            """
        ).fetchone()
    finally:
        for temp in ("_rep_open", "_rep_fp"):
            con.execute(f"drop table if exists {temp}")
    return changed == 0 and dropped == 0


def cached_totals(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, dict], dict | None]:
    """`build_report(con)`'s totals per currency and in the company currency, from the cache."""
    with catalog_read_once(con):
        return _cached_totals(con)


def _cached_totals(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, dict], dict | None]:
    found = con.execute(
        f"""
        with money as (
            select currency, sum(money_at_risk::decimal(38, 2)) as amount,
                   list(distinct case_id) as cases
            from {CACHE} where money_at_risk is not null group by 1
        ),
        goods as (
            select goods_currency as currency, sum(goods_at_risk::decimal(38, 2)) as amount,
                   list(distinct case_id) as cases
            from {CACHE} where goods_at_risk is not null group by 1
        ),
        counted as (
            select currency, count(*) as n from {CACHE}
            where currency is not null and currency <> '' group by 1
        ),
        currencies as (
            select currency from money union select currency from goods
            union select currency from counted
        )
        select k.currency, m.amount, g.amount,
               len(list_distinct(flatten([coalesce(m.cases, []), coalesce(g.cases, [])]))),
               coalesce(n.n, 0)
        from currencies as k left join money as m using (currency)
        left join goods as g using (currency) left join counted as n using (currency)
        order by k.currency
        """
    ).fetchall()
    by_currency = {
        currency: {
            "money_at_risk": _dec_or_zero(money),
            "goods_at_risk": _dec_or_zero(goods),
            "cases": int(cases),
            "rows": int(rows),
        }
        for currency, money, goods, cases, rows in found
    }
    company = company_currency(con)
    if not company or not read_rates(con):
        return by_currency, None
    money, goods = con.execute(
        f"select sum(money_at_risk_company::decimal(38, 2)), "
        f"sum(goods_company::decimal(38, 2)) from {CACHE}"
    ).fetchone()
    not_converted = {}
    for key, column in (
        ("money_at_risk", "money_unconverted"),
        ("goods_at_risk", "goods_unconverted"),
    ):
        found_c = [
            r[0]
            for r in con.execute(
                f"select distinct {column} from {CACHE} where {column} is not null order by 1"
            ).fetchall()
        ]
        if found_c:
            not_converted[key] = found_c
    return by_currency, {
        "currency": company,
        "money_at_risk": _dec_or_zero(money),
        "goods_at_risk": _dec_or_zero(goods),
        "not_converted": not_converted,
    }


def cached_rule_summary(
    con: duckdb.DuckDBPyConnection, catalog: tuple[Rule, ...] = CATALOG
) -> list[dict]:
    """`rule_summary(build_report(con).rows)`, from the cache."""
    counts = dict(con.execute(f"select rule, count(*) from {CACHE} group by 1").fetchall())
    sums: dict[tuple[str, str], dict[str, Decimal]] = {}
    for column in ("money_at_risk", "goods_at_risk"):
        for rule, currency, amount in con.execute(
            f"""
            select rule, currency, sum({column}::decimal(38, 2)) from {CACHE}
            where {column} is not null and currency is not null and currency <> ''
            group by 1, 2 order by 1, 2
            """
        ).fetchall():
            sums.setdefault((rule, column), {})[currency] = Decimal(0) + amount
    return [
        {
            "rule": entry.rule,
            "severity": entry.severity,
            "count": int(counts.get(entry.rule, 0)),
            "money_at_risk": sums.get((entry.rule, "money_at_risk"), {}),
            "goods_at_risk": sums.get((entry.rule, "goods_at_risk"), {}),
            "description": entry.description,
        }
        for entry in catalog
    ]


def cached_cases(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(f"select count(distinct case_id) from {CACHE}").fetchone()[0]


def cached_rows(
    con: duckdb.DuckDBPyConnection,
    limit: int | None = None,
    per_rule: int | None = None,
    catalog: tuple[Rule, ...] = CATALOG,
) -> list[dict]:
    """The first `limit` rows of the open report (or the first `per_rule` of each rule), in
    report order, as `build_report(con).rows` has them: their cases computed again (a row's
    figures depend on its whole case), not the whole report."""
    from pipelines.lib.recon.lifecycle import list_mismatches

    order = _cached_order()
    if per_rule is not None:
        picked = (
            f"select mismatch_id from (select c.mismatch_id, row_number() over "
            f"(partition by c.rule order by {order}) as n from {CACHE} as c "
            f"join recon.mismatches as m using (mismatch_id)) where n <= {int(per_rule)}"
        )
    else:
        picked = (
            f"select c.mismatch_id from {CACHE} as c join recon.mismatches as m "
            f"using (mismatch_id) order by {order}"
            + (f" limit {int(limit)}" if limit is not None else "")
        )
    con.execute(f"create or replace temp table _rep_picked as {picked}")
    try:
        con.execute(
            f"create or replace temp table _rep_case_rows as select mismatch_id from {CACHE} "
            f"where case_id in (select case_id from {CACHE} "
            "where mismatch_id in (select mismatch_id from _rep_picked))"
        )
        wanted = {r[0] for r in con.execute("select mismatch_id from _rep_picked").fetchall()}
        rows = [dict(r) for r in list_mismatches(con, status="open", only="_rep_case_rows")]
    finally:
        con.execute("drop table if exists _rep_picked")
        con.execute("drop table if exists _rep_case_rows")
    with catalog_read_once(con):
        report = report_from_rows(con, rows, catalog)
    return [r for r in report.rows if r["mismatch_id"] in wanted]
