"""Planning: open mismatches with an automatic fix become adjustments (DESIGN §6).

Which rules have an automatic fix, and why the others need a person, is the rule catalog's
(`pipelines.lib.recon.catalog`: `auto_fix_action`, `exception_reason`); the actions are the
vocabulary of `pipelines.lib.erp.base`. The planner reads `recon.mismatches` (the open rows) and
`recon.adjustment_candidates` (dbt: one row per fixable mismatch and ERP return line) only:

- goods short in the ERP (`receipt_not_posted`, ERP-short `posted_qty_mismatch`) →
  `finish_return_shipment` of the missing quantity (inspected - posted) into the mismatch's
  disposition location, or `create_return_shipment` when CDC shows no unfinished customer return
  shipment of the line; less what an internal move of the same planning brings there;
- goods in the wrong place (`disposition_mismatch`) → `internal_move` from the mismatch's location
  to the line's location that is short, at most what the ERP holds there;
- money short in the ERP (`refund_without_credit`, ERP-short `credit_amount_mismatch`) →
  `post_draft_credit_note` (or `create_credit_note` when CDC shows no draft) with the return's
  uncredited authorized units at each line's unit price. The credit note's lines carry the sale
  lines' taxes (as Tryton's own credit notes do), so the missing amount is the credit's total
  incl. tax: the payload carries it (`expected_total`, `tolerance`) and the adapter, which reads
  the lines' taxes from the ERP, posts only a credit note whose total matches it. The warehouse
  holds no ERP tax data, so the planner can only tell that a refund short of the units' value
  before tax is not theirs (a partial refund or a fee: a person); the adapter refuses the rest
  (`ErpPermanentError`, so the exception queue with the reason).

Everything else (over-postings, over-credits, duplicates, currency mismatches, unmatched
receipts, stale returns, unmapped SKUs, or a fix that cannot be built from the data) goes to the
exception queue with the reason.

Each adjustment's idempotency key is a sha256 of the mismatch id, the action and the payload, so
planning again finds the same key and adds nothing. A mismatch has at most one adjustment at work:
while one is planned, approved or in the exception queue and no push has tried it yet, a changed
mismatch supersedes it (the old one is rejected by `auto`); once a push tried one (its document
may exist) or sent it, nothing new is planned until the mismatch has resolved once (the ERP
document came back through ingestion). Planned adjustments whose mismatch stops being open are
rejected by `auto`.

While a landing source is stale (`pipelines.lib.source_status`, DESIGN §12), planning does nothing
at all: the mismatches of a partial run may be phantoms of the missing source, so nothing is
planned, auto-approved, superseded or rejected until every source lands again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb

from pipelines.lib.erp.base import CREDIT_ACTIONS, FALLBACK, MOVE_ACTIONS, STOCK_ACTIONS
from pipelines.lib.recon.catalog import CATALOG
from pipelines.lib.source_status import describe, stale_sources
from pipelines.lib.writeback.schema import ADJUSTMENTS, ATTEMPTS, EXCEPTIONS, ensure_tables

# each fixable rule's ERP-native fix (the catalog's auto_fix_action, DESIGN §6's vocabulary)
RULE_ACTION: dict[str, str] = {r.rule: r.auto_fix_action for r in CATALOG if r.auto_fix_action}
AUTO = "auto"
KEY_PREFIX = "returnsync-"


def _rules_for(actions: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(rule for rule, action in RULE_ACTION.items() if action in actions)


def stock_rules() -> tuple[str, ...]:
    """Rules fixed by receiving goods (a customer return shipment)."""
    return _rules_for(STOCK_ACTIONS)


def move_rules() -> tuple[str, ...]:
    """Rules fixed by an internal move (goods in the wrong place)."""
    return _rules_for(MOVE_ACTIONS)


def credit_rules() -> tuple[str, ...]:
    """Rules fixed by a credit note."""
    return _rules_for(CREDIT_ACTIONS)


def fixable_rules() -> tuple[str, ...]:
    return tuple(RULE_ACTION)


# module constants as of import (the catalog as shipped)
STOCK_RULES: tuple[str, ...] = stock_rules()
MOVE_RULES: tuple[str, ...] = move_rules()
CREDIT_RULES: tuple[str, ...] = credit_rules()
FIXABLE_RULES: tuple[str, ...] = fixable_rules()

# why a mismatch of a rule without an automatic fix needs a person (the catalog's
# exception_reason; a rule without one gets "no automatic fix")
NO_FIX_REASONS: dict[str, str] = {
    r.rule: r.exception_reason
    for r in CATALOG
    if r.rule not in FIXABLE_RULES and r.exception_reason
}


def _in_list(names: tuple[str, ...]) -> str:
    """A SQL `in` list of rule names (catalog names are lower-case identifiers; no rule is
    named '', so an empty list matches nothing)."""
    return "(" + ", ".join(f"'{n}'" for n in names or ("",)) + ")"


@dataclass(frozen=True)
class Limits:
    """Auto-approve limits (seed `recon_settings`: auto_approve_amount, auto_approve_quantity).

    `amount` is the default row's (currency empty); `amount_by_currency` the rows of a currency
    (DESIGN §11: money thresholds per currency), which `amount_for` prefers."""

    amount: Decimal = Decimal("250")
    quantity: Decimal = Decimal("10")
    amount_by_currency: Mapping[str, Decimal] = field(default_factory=dict)

    def amount_for(self, currency: str | None) -> Decimal:
        return self.amount_by_currency.get((currency or "").strip().upper(), self.amount)


@dataclass
class PlanSummary:
    planned: int = 0  # new adjustments
    auto_approved: int = 0  # of those, approved by `auto`
    waiting: int = 0  # of those, waiting for a person
    unchanged: int = 0  # mismatches whose adjustment already exists or is at work
    superseded: int = 0  # waiting adjustments replaced because their mismatch changed
    obsolete: int = 0  # waiting adjustments rejected because their mismatch is no longer open
    exceptions_opened: int = 0  # mismatches newly in the exception queue
    exceptions_closed: int = 0  # planning exceptions closed (mismatch gone, or now fixable)
    adjustment_ids: list[str] = field(default_factory=list)
    skipped_reason: str | None = None  # nothing planned: e.g. a source is stale
    examined: int = 0  # open mismatches whose planning inputs changed since the last planning

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


@dataclass(frozen=True)
class Proposal:
    """What planning decided for one open mismatch: an action with its payload, or a reason."""

    mismatch_id: str
    rule: str
    rma_number: str | None
    sku: str | None
    action: str | None = None
    payload: Mapping[str, Any] | None = None
    amount: Decimal | None = None
    quantity: Decimal | None = None
    currency: str | None = None
    exception_reason: str | None = None
    covered: bool = False  # another adjustment of this planning fixes it (an internal move)

    @property
    def idempotency_key(self) -> str:
        assert self.action is not None and self.payload is not None
        return idempotency_key(self.mismatch_id, self.action, self.payload)


def _text(value: Decimal | int) -> str:
    """A canonical decimal string (`2`, `12.5`), the same for 2, 2.000 and Decimal('2.0')."""
    text = format(Decimal(value).normalize(), "f")
    return text


def canonical_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def idempotency_key(mismatch_id: str, action: str, payload: Mapping[str, Any]) -> str:
    """`returnsync-<sha256>` of mismatch id, action and content: the ERP document's reference."""
    body = f"{mismatch_id}\n{action}\n{canonical_json(payload)}".encode()
    return KEY_PREFIX + hashlib.sha256(body).hexdigest()


def adjustment_id_for(key: str) -> str:
    """A short id for people (`returnsync approve adj-…`), derived from the key."""
    return "adj-" + key.removeprefix(KEY_PREFIX)[:12]


def exception_id_for(kind: str, ref: str) -> str:
    return "exc-" + hashlib.sha256(f"{kind}\n{ref}".encode()).hexdigest()[:12]


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def read_limits(con: duckdb.DuckDBPyConnection) -> Limits:
    """The auto-approve limits from the `recon_settings` seed; the defaults when it is missing."""
    default = Limits()
    if not _exists(con, "seeds", "recon_settings"):
        return default
    has_currency = con.execute(
        "select count(*) from information_schema.columns where table_schema = 'seeds' "
        "and table_name = 'recon_settings' and column_name = 'currency'"
    ).fetchone()[0]
    currency = "nullif(upper(trim(currency)), '')" if has_currency else "null"
    found = con.execute(
        f"select setting, value, {currency} from seeds.recon_settings "
        "where setting in ('auto_approve_amount', 'auto_approve_quantity')"
    ).fetchall()
    rows = {setting: value for setting, value, cur in found if cur is None}
    by_currency = {
        cur: Decimal(str(value))
        for setting, value, cur in found
        if cur is not None and setting == "auto_approve_amount" and value is not None
    }
    amount = rows.get("auto_approve_amount")
    quantity = rows.get("auto_approve_quantity")
    return Limits(
        amount=Decimal(str(amount)) if amount is not None else default.amount,
        quantity=Decimal(str(quantity)) if quantity is not None else default.quantity,
        amount_by_currency=by_currency,
    )


# -- proposals -----------------------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


CANDIDATES = "recon.adjustment_candidates"


def _in_scope(scope: str | None, column: str = "m.mismatch_id") -> str:
    """`and <column> in <scope>` (a temp table of mismatch ids), or nothing (every mismatch)."""
    return f"and {column} in (select mismatch_id from {scope})" if scope else ""


def _candidates(
    con: duckdb.DuckDBPyConnection, rules: tuple[str, ...], scope: str | None = None
) -> dict[str, list[dict]]:
    """The open mismatches of `rules` (of `scope` only, when given) with their candidate rows
    (one per ERP return line; a mismatch missing from the candidates has none), by mismatch id."""
    rows = _rows(
        con,
        f"""
        select m.mismatch_id, m.rule, m.rma_number, m.sku, m.location, m.qty_delta,
               m.amount_delta, c.* exclude (mismatch_id, rule, rma_number, sku, location,
                                            qty_delta, amount_delta)
        from recon.mismatches as m
        left join {CANDIDATES} as c on c.mismatch_id = m.mismatch_id
        where m.status = 'open' and m.rule in {_in_list(rules)} {_in_scope(scope)}
        order by m.mismatch_id, c.erp_return_line_id
        """,
    )
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["mismatch_id"], []).append(row)
    return out


def _base(first: Mapping[str, Any], sku: str | None) -> dict[str, Any]:
    return {
        "mismatch_id": first["mismatch_id"],
        "rule": first["rule"],
        "rma_number": first["rma_number"],
        "sku": sku,
    }


def _one_line(rows: list[dict]) -> tuple[dict | None, str | None]:
    """The single ERP return line of a stock mismatch, or why there is none."""
    lines = [r for r in rows if r.get("erp_return_line_id") is not None]
    if not lines:
        return None, "the return has no ERP return line for this product to post against"
    if len({r["erp_return_line_id"] for r in lines}) > 1:
        return None, "more than one ERP return line for this product: a person must choose"
    return lines[0], None


def _stock_proposals(
    con: duckdb.DuckDBPyConnection,
    covered: Mapping[tuple[int, str], Decimal],
    scope: str | None = None,
) -> list[Proposal]:
    """Goods short in the ERP: finish the return's own customer return shipment, or create one
    when none is left; less what an internal move of this planning already brings there."""
    out = []
    for rows in _candidates(con, stock_rules(), scope).values():
        first = rows[0]
        base = _base(first, first["sku"])
        missing = -Decimal(first["qty_delta"]) if first["qty_delta"] is not None else None
        line, reason = None, None
        if missing is None or missing <= 0:
            reason = (
                "the ERP has more posted than inspected: a person must reverse the extra posting"
            )
        elif not first["location"]:
            reason = "the mismatch names no ERP location to post to"
        elif not first["sku"]:
            reason = "the mismatch names no ERP product"
        else:
            line, reason = _one_line(rows)
        if reason or line is None:
            out.append(Proposal(**base, exception_reason=reason))
            continue
        line_id = int(line["erp_return_line_id"])
        missing -= covered.get((line_id, first["location"]), Decimal(0))
        if missing <= 0:
            out.append(Proposal(**base, covered=True))  # an internal move brings the goods
            continue
        action = RULE_ACTION[first["rule"]]
        if action in FALLBACK and line.get("open_return_shipment_id") is None:
            action = FALLBACK[action]  # CDC shows no unfinished shipment of the line
        payload = {
            "return_line_ref": line_id,
            "product_code": first["sku"],
            "quantity": _text(missing),
            "to_location_code": first["location"],
            "description": f"returnsync {first['rule']} {first['rma_number']} {first['sku']}",
        }
        price = line.get("unit_price")
        out.append(
            Proposal(
                **base,
                action=action,
                payload=payload,
                quantity=missing,
                amount=(missing * Decimal(price)) if price is not None else None,
                currency=line.get("line_currency") or line.get("currency"),
            )
        )
    return out


def _move_proposals(con: duckdb.DuckDBPyConnection, scope: str | None = None) -> list[Proposal]:
    """Goods in the wrong place: an internal move from where the ERP holds them to the line's
    disposition location that is short."""
    out = []
    for rows in _candidates(con, move_rules(), scope).values():
        first = rows[0]
        base = _base(first, first["sku"])
        line, reason = None, None
        if not first["location"]:
            reason = "the mismatch names no ERP location to move from"
        elif not first["sku"]:
            reason = "the mismatch names no ERP product"
        else:
            line, reason = _one_line(rows)
        if line is not None and not line.get("move_to_location"):
            reason = (
                "posted into a location where nothing was inspected and no location of the line "
                "is short: a person must reverse the extra ERP posting"
            )
        if reason or line is None:
            out.append(Proposal(**base, exception_reason=reason))
            continue
        held = Decimal(line.get("qty_posted") or 0)
        short = Decimal(line.get("move_to_short_qty") or 0)
        quantity = min(held, short)
        if quantity <= 0:
            out.append(
                Proposal(**base, exception_reason="the ERP holds nothing there to move anymore")
            )
            continue
        payload = {
            "return_line_ref": int(line["erp_return_line_id"]),
            "product_code": first["sku"],
            "quantity": _text(quantity),
            "from_location_code": first["location"],
            "to_location_code": line["move_to_location"],
            "description": f"returnsync {first['rule']} {first['rma_number']} {first['sku']}",
        }
        price = line.get("unit_price")
        out.append(
            Proposal(
                **base,
                action=RULE_ACTION[first["rule"]],
                payload=payload,
                quantity=quantity,
                amount=(quantity * Decimal(price)) if price is not None else None,
                currency=line.get("line_currency") or line.get("currency"),
            )
        )
    return out


def _credit_proposals(con: duckdb.DuckDBPyConnection, scope: str | None = None) -> list[Proposal]:
    """Money short in the ERP: post the return's own draft credit note corrected to the
    uncredited authorized units at the lines' unit prices, or create one with those units when
    there is no draft; the missing amount is the credit's total incl. tax (`expected_total`),
    which the adapter checks against the lines' ERP taxes; a refund short of the units' value
    before tax goes to a person."""
    out = []
    for rows in _candidates(con, credit_rules(), scope).values():
        first = rows[0]
        base = _base(first, None)
        delta = Decimal(first["amount_delta"]) if first["amount_delta"] is not None else None
        lines = [r for r in rows if r.get("erp_return_line_id") is not None]
        currency = first.get("currency")
        reason = None
        if delta is None or delta >= 0:
            reason = "the ERP credited more than the channel refunded: a person must reverse it"
        elif first.get("return_key") is None or first.get("erp_return_order_id") is None:
            reason = "the return has no ERP return order to credit against"
        elif not lines:
            reason = "the ERP return order has no line with a product to credit"
        elif first.get("party_id") is None:
            reason = "the ERP return order's party is unknown (staging.stg_erp__sales)"
        elif not currency:
            reason = "the return has no currency"
        elif any((r.get("line_currency") or currency) != currency for r in lines):
            reason = (
                f"the channel refunded in {currency} but the ERP return order is in another "
                "currency: a person must decide"
            )
        if reason:
            out.append(Proposal(**base, exception_reason=reason))
            continue
        missing = -delta
        credit_lines, units, value = [], Decimal(0), Decimal(0)
        for r in lines:
            uncredited = Decimal(r["qty_authorized"] or 0) - Decimal(r["qty_credited"] or 0)
            if uncredited <= 0 or r.get("unit_price") is None:
                continue
            price = Decimal(r["unit_price"])
            credit_lines.append(
                {
                    "return_line_ref": int(r["erp_return_line_id"]),
                    "product_code": r["line_sku"],
                    "quantity": _text(uncredited),
                    "unit_price": _text(price),
                }
            )
            units += uncredited
            value += uncredited * price
        tolerance = Decimal(first.get("amount_tolerance") or "0.01")
        if not credit_lines:
            reason = (
                "every authorized unit of the return is already credited in the ERP: a top-up "
                "credit note would raise duplicate_credit; a person must correct the credit note"
            )
        elif missing < value - tolerance:
            # taxes only add to a credit note's lines: a refund short of the units' value
            # before tax cannot be the uncredited units, whatever the taxes
            reason = (
                f"the channel refunded {_text(missing)} {currency} more than the ERP credited, "
                f"but the return's uncredited units are worth {_text(value)} {currency} at their "
                "unit prices before tax (a partial refund or a fee?): a person must decide"
            )
        if reason:
            out.append(Proposal(**base, exception_reason=reason))
            continue
        action = RULE_ACTION[first["rule"]]
        if action in FALLBACK and not any(r.get("draft_credit_note_id") for r in lines):
            action = FALLBACK[action]  # CDC shows no draft credit note of the return
        payload = {
            "return_line_ref": credit_lines[0]["return_line_ref"],
            "party": int(first["party_id"]),
            "currency_code": currency,
            "lines": credit_lines,
            # the credit note's total incl. the taxes its lines carry from the sale lines (the
            # adapter computes them as Tryton does and refuses a total off by more than this)
            "expected_total": _text(missing),
            "tolerance": _text(tolerance),
            "description": f"returnsync {first['rule']} {first['rma_number']}",
        }
        out.append(
            Proposal(
                **base,
                action=action,
                payload=payload,
                amount=missing,
                quantity=units,
                currency=currency,
            )
        )
    return out


def _other_proposals(con: duckdb.DuckDBPyConnection, scope: str | None = None) -> list[Proposal]:
    rows = con.execute(
        f"""
        select mismatch_id, rule, rma_number, sku from recon.mismatches
        where status = 'open' and rule not in {_in_list(fixable_rules())}
            {_in_scope(scope, "mismatch_id")}
        order by mismatch_id
        """
    ).fetchall()
    return [
        Proposal(m, rule, rma, sku, exception_reason=NO_FIX_REASONS.get(rule, "no automatic fix"))
        for m, rule, rma, sku in rows
    ]


def propose(con: duckdb.DuckDBPyConnection, only: Iterable[str] | None = None) -> list[Proposal]:
    """What each open mismatch needs: an adjustment, or a person (read-only).

    Reads `recon.mismatches` (the open ones) and `recon.adjustment_candidates` (dbt). `only`
    limits the proposals to those mismatch ids; what each of them gets is what a proposal for
    every mismatch gives it (a stock fix still counts the internal moves of its line that are
    outside `only`)."""
    if not _exists(con, "recon", "mismatches"):
        return []
    if not _exists(con, "recon", "adjustment_candidates"):
        raise LookupError(
            "recon.adjustment_candidates missing: build the dbt models before planning"
        )
    scope = move_scope = None
    if only is not None:
        scope, move_scope = _SCOPE, _MOVE_SCOPE
        con.execute(f"create or replace temp table {scope} (mismatch_id varchar)")
        con.execute(f"insert into {scope} select unnest(?::varchar[])", [list(only)])
        # the moves a stock fix in scope subtracts: those sharing an ERP return line with it
        con.execute(
            f"""
            create or replace temp table {move_scope} as
            select mismatch_id from {scope}
            union
            select v.mismatch_id
            from {CANDIDATES} as s join {CANDIDATES} as v using (erp_return_line_id)
            join recon.mismatches as ms on ms.mismatch_id = s.mismatch_id
            join recon.mismatches as mv on mv.mismatch_id = v.mismatch_id
            where s.mismatch_id in (select mismatch_id from {scope})
              and ms.rule in {_in_list(stock_rules())} and mv.rule in {_in_list(move_rules())}
              and mv.status = 'open'
            """
        )
    moves = _move_proposals(con, move_scope)
    covered: dict[tuple[int, str], Decimal] = {}
    for p in moves:
        if p.action is not None and p.payload is not None:
            spot = (int(p.payload["return_line_ref"]), str(p.payload["to_location_code"]))
            covered[spot] = covered.get(spot, Decimal(0)) + Decimal(p.payload["quantity"])
    if only is not None:
        wanted = set(only)
        moves = [p for p in moves if p.mismatch_id in wanted]
    proposals = _stock_proposals(con, covered, scope) + moves + _credit_proposals(con, scope)
    out = [p for p in proposals if not p.covered] + _other_proposals(con, scope)
    for table in (scope, move_scope):
        if table:
            con.execute(f"drop table {table}")
    return out


_SCOPE = "_plan_scope"
_MOVE_SCOPE = "_plan_move_scope"


def needs_approval(proposal: Proposal, limits: Limits) -> bool:
    if proposal.action in CREDIT_ACTIONS:
        return proposal.amount is None or proposal.amount > limits.amount_for(proposal.currency)
    return proposal.quantity is None or proposal.quantity > limits.quantity


# -- what changed since the last planning ----------------------------------------------------------

# One row per open mismatch planned for: a fingerprint of everything its planning reads, and
# whether it got an adjustment (not a planning exception). A cache, not a record: without it (or
# with the table emptied) the next planning examines every open mismatch, which is what the
# planner did on every run before (issue 24); so it is created here, not by a migration.
STATE = "writeback.plan_state"
# Bump when what a proposal is made of changes in a way the fingerprint cannot see (the proposal
# code itself): every mismatch is then examined again once.
PLANNER_VERSION = "1"


def _ensure_state(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"create table if not exists {STATE} "
        "(mismatch_id varchar not null, fingerprint ubigint not null, has_action boolean not null)"
    )


def _global_fingerprint(limits: Limits) -> str:
    """What every proposal depends on beside its own rows: the limits and the rule catalog's
    actions and reasons (a change re-examines every mismatch)."""
    return canonical_json(
        {
            "version": PLANNER_VERSION,
            "amount": _text(limits.amount),
            "quantity": _text(limits.quantity),
            "by_currency": {k: _text(v) for k, v in sorted(limits.amount_by_currency.items())},
            "actions": RULE_ACTION,
            "fallback": dict(FALLBACK),
            "reasons": NO_FIX_REASONS,
        }
    )


def _input_fingerprints(con: duckdb.DuckDBPyConnection) -> None:
    """`_plan_inputs` (mismatch_id, ih): per open mismatch, a hash of what its proposal is made
    of: its own row, its candidate rows, and for a stock fix the inputs of the internal moves
    sharing an ERP return line with it (what `covered` subtracts)."""
    con.execute(
        f"""
        create or replace temp table _plan_inputs as
        with m as (
            select mismatch_id, rule,
                   hash(mismatch_id, rule, rma_number, sku, location, qty_delta, amount_delta) as h
            from recon.mismatches where status = 'open'
        ),
        cand as (
            select c.mismatch_id, sum(hash(c)::hugeint) as h
            from {CANDIDATES} as c group by 1
        ),
        own as (
            select m.mismatch_id, m.rule, hash(m.h, coalesce(cand.h, 0)) as ih
            from m left join cand using (mismatch_id)
        ),
        lines as (
            select distinct mismatch_id, erp_return_line_id
            from {CANDIDATES} where erp_return_line_id is not null
        ),
        pairs as (
            select distinct s.mismatch_id, v.mismatch_id as move_id
            from lines as s join lines as v using (erp_return_line_id)
            join own as os on os.mismatch_id = s.mismatch_id
            join own as ov on ov.mismatch_id = v.mismatch_id
            where os.rule in {_in_list(stock_rules())} and ov.rule in {_in_list(move_rules())}
        ),
        cover as (
            select p.mismatch_id, sum(o.ih::hugeint) as h
            from pairs as p join own as o on o.mismatch_id = p.move_id group by 1
        )
        select o.mismatch_id, hash(o.ih, coalesce(cv.h, 0)) as ih
        from own as o left join cover as cv using (mismatch_id)
        """
    )


def _fingerprints(con: duckdb.DuckDBPyConnection, global_fp: str, scope: str | None = None) -> None:
    """`_plan_fp` (mismatch_id, fingerprint): `_plan_inputs` with the mismatch's write-back
    state as planning reads it (its adjustments' keys, statuses and whether a push tried or sent
    them, its exceptions, when it last resolved). No wall-clock column enters it: the same data
    gives the same fingerprint on every run."""
    con.execute(
        f"""
        create or replace temp table _plan_fp as
        with i as (select * from _plan_inputs as i where true {_in_scope(scope, "i.mismatch_id")}),
        a as (
            select a.mismatch_id,
                   sum(hash(a.adjustment_id, a.idempotency_key, a.status,
                            a.in_flight_since is null, a.sent_at is null,
                            coalesce(t.n, 0))::hugeint) as h
            from {ADJUSTMENTS} as a
            left join (select adjustment_id, count(*) as n from {ATTEMPTS} group by 1) as t
                using (adjustment_id)
            where a.mismatch_id in (select mismatch_id from i)
            group by 1
        ),
        e as (
            select mismatch_id, sum(hash(exception_id, adjustment_id, status, reason)::hugeint) as h
            from {EXCEPTIONS} where mismatch_id in (select mismatch_id from i) group by 1
        ),
        r as (
            select mismatch_id, max(changed_at) as at from recon.mismatch_history
            where status = 'resolved' and mismatch_id in (select mismatch_id from i) group by 1
        )
        select i.mismatch_id,
               hash(?, i.ih, coalesce(a.h, 0), coalesce(e.h, 0), r.at) as fingerprint
        from i left join a using (mismatch_id) left join e using (mismatch_id)
        left join r using (mismatch_id)
        """,
        [global_fp],
    )


def _changed_since_last_plan(con: duckdb.DuckDBPyConnection, global_fp: str) -> list[str]:
    """The open mismatches whose fingerprint is not the one the last planning recorded."""
    _input_fingerprints(con)
    _fingerprints(con, global_fp)
    return [
        r[0]
        for r in con.execute(
            f"""
            select f.mismatch_id from _plan_fp as f
            left join {STATE} as s using (mismatch_id)
            where s.fingerprint is distinct from f.fingerprint
            order by 1
            """
        ).fetchall()
    ]


def _record_state(
    con: duckdb.DuckDBPyConnection, global_fp: str, examined: list[str], with_action: set[str]
) -> None:
    """After planning (in its transaction): the examined mismatches' fingerprints as planning
    left them, and no row for a mismatch that is no longer open."""
    con.execute(
        f"delete from {STATE} where mismatch_id not in (select mismatch_id from _plan_inputs)"
    )
    if examined:
        con.execute(f"create or replace temp table {_SCOPE} (mismatch_id varchar)")
        con.execute(f"insert into {_SCOPE} select unnest(?::varchar[])", [examined])
        _fingerprints(con, global_fp, _SCOPE)
        con.execute(f"delete from {STATE} where mismatch_id in (select mismatch_id from {_SCOPE})")
        con.execute(
            f"insert into {STATE} select mismatch_id, fingerprint, "
            "list_contains(?::varchar[], mismatch_id) from _plan_fp",
            [sorted(with_action)],
        )
        con.execute(f"drop table {_SCOPE}")
    con.execute("drop table _plan_fp")
    con.execute("drop table _plan_inputs")


# -- planning ------------------------------------------------------------------------------------


def plan_adjustments(
    con: duckdb.DuckDBPyConnection,
    *,
    now: datetime | None = None,
    limits: Limits | None = None,
) -> PlanSummary:
    """Plan adjustments for the open mismatches in one transaction; idempotent.

    Only the open mismatches whose planning inputs changed since the last planning are examined
    (`writeback.plan_state`: a fingerprint per open mismatch of its row, its candidate rows,
    the internal moves a stock fix subtracts, its write-back state, the limits and the
    catalog's actions); the others would be planned exactly as they were, so what this writes
    is what planning every open mismatch writes (tests/writeback/test_incremental_plan.py).

    Nothing at all while a landing source is stale (`summary.skipped_reason` says which)."""
    ensure_tables(con)
    when = now or datetime.now(UTC)
    summary = PlanSummary()
    stale = stale_sources(con)
    if stale:
        summary.skipped_reason = f"stale source(s): {describe(stale)}"
        return summary
    if not _exists(con, "recon", "adjustment_candidates"):
        propose(con)  # the same LookupError as ever
    limits = limits or read_limits(con)
    _ensure_state(con)
    global_fp = _global_fingerprint(limits)
    changed = _changed_since_last_plan(con, global_fp)
    proposals = propose(con, only=changed)
    summary.examined = len(changed)
    resolved_sql = (
        "select mismatch_id, max(changed_at) as at from recon.mismatch_history "
        "where status = 'resolved' group by mismatch_id"
        if _exists(con, "recon", "mismatch_history")
        else "select null::varchar as mismatch_id, null::timestamptz as at where false"
    )
    con.execute("begin transaction")
    try:
        summary.obsolete = _reject_obsolete(con, when)
        summary.exceptions_closed = _close_gone_exceptions(con, when)
        for proposal in proposals:
            if proposal.action is None:
                summary.exceptions_opened += _open_planning_exception(con, proposal, when)
                continue
            _plan_one(con, proposal, limits, when, summary, resolved_sql)
        # the mismatches not examined keep what they had: an adjustment counts as unchanged
        summary.unchanged += con.execute(
            f"""
            select count(*) from {STATE} as s join _plan_fp as f using (mismatch_id)
            where s.has_action and s.fingerprint = f.fingerprint
            """
        ).fetchone()[0]
        _record_state(
            con, global_fp, changed, {p.mismatch_id for p in proposals if p.action is not None}
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return summary


def _reject_obsolete(con: duckdb.DuckDBPyConnection, when: datetime) -> int:
    """Planned adjustments (never approved) whose mismatch is no longer open: rejected.

    Approved ones are left to the push, which looks their key up in the ERP first (a document
    may exist after a crash); those in the exception queue wait for a person.
    """
    ids = [
        r[0]
        for r in con.execute(
            f"""
            select a.adjustment_id from {ADJUSTMENTS} as a
            left join recon.mismatches as m on m.mismatch_id = a.mismatch_id
            where a.status = 'planned' and coalesce(m.status, 'missing') <> 'open'
            """
        ).fetchall()
    ]
    for adjustment_id in ids:
        _decide(con, adjustment_id, "rejected", AUTO, "its mismatch is no longer open", when)
        _close_exception(con, exception_id_for("adjustment", adjustment_id), "rejected", when)
    return len(ids)


def _close_gone_exceptions(con: duckdb.DuckDBPyConnection, when: datetime) -> int:
    return con.execute(
        f"""
        update {EXCEPTIONS} as e
        set status = 'closed', closed_at = ?, updated_at = ?,
            closed_reason = 'mismatch ' || coalesce(m.status, 'gone')
        from (select e2.exception_id, m2.status
              from {EXCEPTIONS} as e2
              left join recon.mismatches as m2 on m2.mismatch_id = e2.mismatch_id
              where e2.status = 'open' and e2.adjustment_id is null
                and coalesce(m2.status, 'gone') <> 'open') as m
        where e.exception_id = m.exception_id
        """,
        [when, when],
    ).fetchone()[0]


def _open_planning_exception(con: duckdb.DuckDBPyConnection, p: Proposal, when: datetime) -> int:
    exception_id = exception_id_for("mismatch", p.mismatch_id)
    row = con.execute(
        f"select status, reason from {EXCEPTIONS} where exception_id = ?", [exception_id]
    ).fetchone()
    if row is None:
        con.execute(
            f"""
            insert into {EXCEPTIONS} (exception_id, mismatch_id, adjustment_id, rule, rma_number,
                sku, reason, message, status, created_at, updated_at)
            values (?, ?, null, ?, ?, ?, ?, null, 'open', ?, ?)
            """,
            [
                exception_id,
                p.mismatch_id,
                p.rule,
                p.rma_number,
                p.sku,
                p.exception_reason,
                when,
                when,
            ],
        )
        return 1
    if row != ("open", p.exception_reason):
        con.execute(
            f"""
            update {EXCEPTIONS} set status = 'open', reason = ?, updated_at = ?,
                closed_at = null, closed_reason = null
            where exception_id = ?
            """,
            [p.exception_reason, when, exception_id],
        )
        return int(row[0] != "open")
    return 0


def _plan_one(
    con: duckdb.DuckDBPyConnection,
    p: Proposal,
    limits: Limits,
    when: datetime,
    summary: PlanSummary,
    resolved_sql: str,
) -> None:
    key = p.idempotency_key
    adjustment_id = adjustment_id_for(key)
    if con.execute(f"select 1 from {ADJUSTMENTS} where idempotency_key = ?", [key]).fetchone():
        summary.unchanged += 1
        return
    at_work = con.execute(
        f"""
        with resolved as ({resolved_sql})
        select a.adjustment_id, a.status, a.in_flight_since is not null
               or exists (select 1 from {ATTEMPTS} as t where t.adjustment_id = a.adjustment_id)
        from {ADJUSTMENTS} as a left join resolved as r on r.mismatch_id = a.mismatch_id
        where a.mismatch_id = ?
          and (a.status in ('planned', 'approved', 'exception')
               or (a.status = 'sent' and (r.at is null or r.at < a.sent_at)))
        """,
        [p.mismatch_id],
    ).fetchall()
    if any(status == "sent" or reached_erp for _, status, reached_erp in at_work):
        # sent and not yet seen back, or a push tried it (its document may exist): never a
        # second document for one mismatch; a person decides through the exception queue
        summary.unchanged += 1
        return
    for old_id, _, _ in at_work:
        _decide(
            con,
            old_id,
            "rejected",
            AUTO,
            f"superseded by {adjustment_id}: the mismatch changed",
            when,
        )
        _close_exception(con, exception_id_for("adjustment", old_id), "superseded", when)
        summary.superseded += 1
    waiting = needs_approval(p, limits)
    status = "planned" if waiting else "approved"
    if waiting:
        reason = (
            f"over the auto-approve limit ({limits.amount_for(p.currency)} {p.currency or ''})"
            if p.action in CREDIT_ACTIONS
            else f"over the auto-approve limit ({limits.quantity} units)"
        )
        reason = reason.replace(" )", ")") + ": waits for a person"
    else:
        reason = "under the auto-approve limits"
    con.execute(
        f"""
        insert into {ADJUSTMENTS} (adjustment_id, idempotency_key, mismatch_id, rule, rma_number,
            sku, action, payload, amount, quantity, currency, status, approved_by, approved_at,
            decided_reason, created_at, updated_at)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            adjustment_id,
            key,
            p.mismatch_id,
            p.rule,
            p.rma_number,
            p.sku,
            p.action,
            canonical_json(p.payload),
            p.amount,
            p.quantity,
            p.currency,
            status,
            None if waiting else AUTO,
            None if waiting else when,
            reason,
            when,
            when,
        ],
    )
    summary.planned += 1
    summary.adjustment_ids.append(adjustment_id)
    if waiting:
        summary.waiting += 1
    else:
        summary.auto_approved += 1
    summary.exceptions_closed += _close_exception(
        con, exception_id_for("mismatch", p.mismatch_id), f"adjustment {adjustment_id}", when
    )


def _decide(
    con: duckdb.DuckDBPyConnection,
    adjustment_id: str,
    status: str,
    by: str,
    reason: str | None,
    when: datetime,
) -> None:
    con.execute(
        f"""
        update {ADJUSTMENTS} set status = ?, approved_by = ?, approved_at = ?,
            decided_reason = ?, updated_at = ?
        where adjustment_id = ?
        """,
        [status, by, when, reason, when, adjustment_id],
    )


def _close_exception(
    con: duckdb.DuckDBPyConnection, exception_id: str, reason: str, when: datetime
) -> int:
    return con.execute(
        f"""
        update {EXCEPTIONS} set status = 'closed', closed_at = ?, closed_reason = ?,
            updated_at = ?
        where exception_id = ? and status = 'open'
        """,
        [when, reason, when, exception_id],
    ).fetchone()[0]
