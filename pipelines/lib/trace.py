"""One return's path across the systems, and the stage latencies operations watches (DESIGN §14).

Reads the published analyst copy (marts + recon; no personal data): every record of a return's
stages (request, approval, WMS receipts and inspections, ERP stock postings, channel refunds, ERP
credit notes, the channel's closing, the ERP documents `returnsync push` sent: see
`writeback_events`) in time order, each with its system, its source record
(the CDC table or the file it came from, its key, its raw position) and the gap since the
previous event; then the stages still missing, with how long they are overdue against the SLA
(seed `recon_settings`, rows `sla_<transition>_h`, as `marts.return_stage_latencies` carries it).

A return is found by its RMA (letters and digits only, case-insensitively: `lr 104233`,
`LR104233` and `LR-104233` are one RMA, DESIGN §4), else by the original order, else by the
return label's tracking number; `by` forces one of them.

The stage-latency percentiles of the operations asset are here too (`percentiles`), so the CLI,
the asset and the tests share one definition: DuckDB's `quantile_cont` (linear interpolation
between the closest ranks, numpy's default "linear" method) over the closed transitions whose
end time lies in (as_of - window, as_of].
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from pipelines.errors import ConfigError

BY = ("rma", "order", "tracking")
FORMATS = ("table", "json")
TRANSITIONS = (
    "requested_to_received",
    "received_to_inspected",
    "inspected_to_posted",
    "refunded_to_credited",
)
TRANSITION_LABELS = {
    "requested_to_received": "requested -> received",
    "received_to_inspected": "received -> inspected",
    "inspected_to_posted": "inspected -> ERP posted",
    "refunded_to_credited": "channel refund -> ERP credit",
}
WINDOWS = (("7d", 7), ("30d", 30))
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
_FILE_POSITION = re.compile(r"^[0-9a-f]{64}:[0-9]+$")
# the files each file-fed system lands (the CDC systems name their table in the position)
_FILES = {
    "returns_saas": "returns_saas webhooks (ndjson)",
    "shopify": "shopify refunds (ndjson)",
    "amazon": "amazon returns report (tsv)",
    "b2b": "b2b credit requests (csv)",
}


class NotFound(ConfigError):
    """Nothing matched what the user asked to trace (exit code 2)."""


def normalize_rma(text: str) -> str:
    """Letters and digits only, upper-case (DESIGN §4)."""
    return re.sub(r"[^0-9A-Za-z]", "", text or "").upper()


@dataclass
class Event:
    stage: str
    at: datetime | None
    system: str | None
    source_kind: str | None = None  # cdc table or file
    source_name: str | None = None
    key: str | None = None
    position: str | None = None
    detail: str = ""
    sku: tuple[str, ...] = ()
    gap_h: float | None = None
    missing: bool = False
    sla_h: float | None = None
    due_at: datetime | None = None
    overdue_h: float | None = None

    def as_dict(self) -> dict:
        out = {
            "stage": self.stage,
            "at": _iso(self.at),
            "system": self.system,
            "source": {
                "kind": self.source_kind,
                "name": self.source_name,
                "key": self.key,
                "position": self.position,
            },
            "detail": self.detail,
            "sku": list(self.sku),
            "gap_h": _round(self.gap_h),
        }
        if self.missing:
            out = {
                "stage": self.stage,
                "missing": True,
                "after": self.detail,
                "sla_h": _round(self.sla_h),
                "due_at": _iso(self.due_at),
                "overdue": self.overdue_h is not None,
                "overdue_h": _round(self.overdue_h),
            }
        return out


@dataclass
class Timeline:
    return_key: str
    rma_number: str
    channel: str | None
    warehouse: str | None
    status: str | None
    order_ref: str | None
    tracking_number: str | None
    events: list[Event] = field(default_factory=list)
    missing: list[Event] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "rma_number": self.rma_number,
            "channel": self.channel,
            "warehouse": self.warehouse,
            "status": self.status,
            "order_ref": self.order_ref,
            "tracking_number": self.tracking_number,
            "events": [e.as_dict() for e in self.events],
            "missing": [e.as_dict() for e in self.missing],
        }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600.0


def source_of(system: str | None, position: str | None) -> tuple[str | None, str | None]:
    """(kind, name) of a record's source: the CDC table its position names, or the file kind."""
    if not position:
        return None, None
    if _FILE_POSITION.match(position):
        return "file", _FILES.get(system or "", f"{system} file")
    topic = position.rsplit(":", 2)[0]
    return "table", topic


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> list[dict]:
    rel = con.execute(query, params or [])
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]


def _exists(con, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def _require(con) -> None:
    for schema, table in (("marts", "returns"), ("marts", "return_stage_latencies")):
        if not _exists(con, schema, table):
            raise ConfigError(
                f"the published copy has no {schema}.{table}: run `returnsync run` first"
            )


def run_as_of(con) -> datetime | None:
    """The as_of of the published build (the time open stages are measured at)."""
    row = con.execute("select max(as_of) from marts.return_stage_latencies").fetchone()
    if row and row[0] is not None:
        return row[0]
    if _exists(con, "recon", "recon_run"):
        row = con.execute("select max(as_of) from recon.recon_run").fetchone()
        return row[0] if row else None
    return None


# -- finding returns ---------------------------------------------------------------------------
def find_returns(con, needle: str, by: str | None = None) -> tuple[str, list[str]]:
    """(how it matched, return keys) for an RMA, order or tracking number, tried in that order."""
    _require(con)
    text = (needle or "").strip()
    if not text:
        raise ConfigError("nothing to trace: give an RMA, an order or a tracking number")
    if by is not None and by not in BY:
        raise ConfigError(f"--by must be one of {', '.join(BY)}")
    norm = normalize_rma(text)
    queries = {
        "rma": ("select return_key from marts.returns where rma_normalized = ?", [norm]),
        "order": (
            "select return_key from marts.returns "
            "where lower(trim(order_ref)) = lower(?) "
            "or (? <> '' and regexp_replace(upper(order_ref), '[^0-9A-Z]', '', 'g') = ?)",
            [text, norm, norm],
        ),
        "tracking": (
            "select return_key from marts.returns "
            "where regexp_replace(upper(tracking_number), '[^0-9A-Z]', '', 'g') = ? "
            "union select return_key from marts.receipts where return_key is not null "
            "and regexp_replace(upper(tracking_number), '[^0-9A-Z]', '', 'g') = ?",
            [norm, norm],
        ),
    }
    for kind in [by] if by else BY:
        if kind != "order" and not norm:
            continue
        query, params = queries[kind]
        keys = sorted({r[0] for r in con.execute(query, params).fetchall()})
        if keys:
            return kind, keys
    what = f"{by} " if by else "RMA, order or tracking number "
    raise NotFound(f"no return matches {what}{text!r} in the published marts")


# -- one return's timeline ---------------------------------------------------------------------
def timeline(con, return_key: str, as_of: datetime | None = None, sku: str | None = None):
    """Every stage record of a return in time order, then its missing stages (see module doc).

    With `sku`, only the records of that product (plus those of the whole return: request,
    approval, closing, and header-level money)."""
    ret = _rows(
        con,
        "select return_key, rma_number, channel, warehouse, status, order_ref, tracking_number, "
        "requested_at, approved_at, closed_at, source_system, source_record_id, source_position "
        "from marts.returns where return_key = ?",
        [return_key],
    )
    if not ret:
        raise NotFound(f"no return {return_key} in the published marts")
    r = ret[0]
    as_of = as_of or run_as_of(con)
    t = Timeline(
        return_key,
        r["rma_number"],
        r["channel"],
        r["warehouse"],
        r["status"],
        r["order_ref"],
        r["tracking_number"],
    )
    kind, name = source_of(r["source_system"], r["source_position"])

    def whole(stage: str, at, detail: str = "") -> None:
        if at is not None:
            t.events.append(
                Event(
                    stage,
                    at,
                    r["source_system"],
                    kind,
                    name,
                    r["source_record_id"],
                    r["source_position"],
                    detail,
                )
            )

    whole("requested", r["requested_at"])
    if r["status"] != "requested" and r["approved_at"] is not None:
        whole("approved", r["approved_at"])
    if r["status"] in ("closed", "cancelled", "rejected", "expired"):
        whole(r["status"], r["closed_at"])
    lines = [
        (
            "received",
            "select received_at as event_at, 'wms' as system, source_record_id, source_position, "
            "sku, "
            "'qty ' || cast(quantity as varchar) || ' at ' || coalesce(warehouse, dc_code, '?') "
            "|| ' (linked by ' || coalesce(link_rule, '?') || ')' as detail "
            "from marts.receipts where return_key = ?",
        ),
        (
            "inspected",
            "select decided_at as event_at, 'wms' as system, source_record_id, source_position, "
            "sku, "
            "'qty ' || cast(quantity as varchar) || ' ' || coalesce(disposition, '?') "
            "|| ' (grade ' || coalesce(grade, '?') || ') -> ' || coalesce(location_code, '?') "
            "as detail from marts.dispositions where return_key = ?",
        ),
        (
            "posted",
            "select posted_at as event_at, 'erp' as system, source_record_id, source_position, "
            "sku, "
            "'qty ' || cast(quantity as varchar) || ' into ' || coalesce(location, '?') "
            "as detail from marts.inventory_adjustments where return_key = ?",
        ),
    ]
    for stage, query in lines:
        for row in _rows(con, query, [return_key]):
            if sku is not None and row["sku"] != sku:
                continue
            k, n = source_of(row["system"], row["source_position"])
            t.events.append(
                Event(
                    stage,
                    row["event_at"],
                    row["system"],
                    k,
                    n,
                    row["source_record_id"],
                    row["source_position"],
                    row["detail"],
                    (row["sku"],) if row["sku"] else (),
                )
            )
    # money: one event per document (an ERP credit note, a Shopify refund, an Amazon refund)
    money = _rows(
        con,
        "select system, kind, coalesce(is_channel_refund, false) as is_channel_refund, "
        "external_id, min(issued_at) as event_at, arg_min(source_record_id, issued_at) as rid, "
        "arg_min(source_position, issued_at) as position, sum(amount) as amount, "
        "min(currency) as currency, "
        "count(distinct currency) as currencies, list(distinct sku order by sku) as skus "
        "from marts.credits where return_key = ? and issued_at is not null "
        "group by all order by event_at",
        [return_key],
    )
    for row in money:
        skus = tuple(s for s in row["skus"] if s)
        if sku is not None and skus and sku not in skus:
            continue
        if row["is_channel_refund"]:
            if not row["amount"] or row["amount"] <= 0:
                continue
            stage = "refunded"
        elif row["system"] == "erp":
            stage = "credited"
        else:
            stage = row["kind"] or "money"
        amount = f"{row['amount']} {row['currency']}" if row["currencies"] == 1 else "mixed"
        k, n = source_of(row["system"], row["position"])
        t.events.append(
            Event(
                stage,
                row["event_at"],
                row["system"],
                k,
                n,
                row["rid"],
                row["position"],
                f"{row['kind']} {row['external_id']}: {amount}",
                skus,
            )
        )
    t.events.extend(writeback_events(con, r["rma_number"], sku))
    order = {"requested": 0, "approved": 1}
    t.events.sort(key=lambda e: (e.at, order.get(e.stage, 2), e.stage, e.key or ""))
    prev = None
    for e in t.events:
        e.gap_h = None if prev is None else _hours(e.at - prev)
        prev = e.at
    for row in _rows(
        con,
        "select transition, from_stage, to_stage, started_at, sla_h "
        "from marts.return_stage_latencies where return_key = ? and is_open "
        "order by transition_order",
        [return_key],
    ):
        due = row["started_at"] + timedelta(hours=row["sla_h"]) if row["sla_h"] else None
        overdue = None  # not yet due (or no SLA)
        if due is not None and as_of is not None and due <= as_of:
            overdue = _hours(as_of - due)
        t.missing.append(
            Event(
                row["to_stage"],
                None,
                None,
                detail=f"{row['from_stage']} at {_iso(row['started_at'])}",
                missing=True,
                sla_h=row["sla_h"],
                due_at=due,
                overdue_h=overdue,
            )
        )
    return t


WRITEBACK_SYSTEM = "returnsync \u2192 ERP"


def writeback_events(con, rma_number: str | None, sku: str | None = None) -> list[Event]:
    """The ERP documents `returnsync push` sent for a return (`recon.writeback_documents`).

    Matched by the normalized RMA, as the return is found. One `written_back` event per sent
    adjustment, at its `sent_at`: system `returnsync \u2192 ERP`, source the ERP document (kind
    `erp document`, name its model and number, or id when it has no number), key the
    adjustment id, detail the action. Adjustments not sent yet (planned or approved) are left out:
    the timeline shows what happened, and the write-back queue lists what waits. A published copy
    without the table (published before it existed) gives none. With `sku`, the documents of
    that product and those of the whole return (no sku)."""
    norm = normalize_rma(rma_number or "")
    if not norm or not _exists(con, "recon", "writeback_documents"):
        return []
    events = []
    for row in _rows(
        con,
        "select adjustment_id, sku, action, erp_model, erp_document_id, erp_document_number, "
        "sent_at from recon.writeback_documents where status = 'sent' and sent_at is not null "
        "and regexp_replace(upper(rma_number), '[^0-9A-Z]', '', 'g') = ? "
        "order by sent_at, adjustment_id",
        [norm],
    ):
        if sku is not None and row["sku"] and row["sku"] != sku:
            continue
        number = row["erp_document_number"] or row["erp_document_id"]
        document = " ".join(x for x in (row["erp_model"], number) if x) or None
        events.append(
            Event(
                "written_back",
                row["sent_at"],
                WRITEBACK_SYSTEM,
                "erp document",
                document,
                row["adjustment_id"],
                None,
                row["action"],
                (row["sku"],) if row["sku"] else (),
            )
        )
    return events


def trace(con, needle: str, by: str | None = None) -> dict:
    """`returnsync trace <needle>`: one timeline per matching return."""
    kind, keys = find_returns(con, needle, by)
    as_of = run_as_of(con)
    return {
        "query": needle,
        "matched_by": kind,
        "as_of": _iso(as_of),
        "returns": [timeline(con, key, as_of).as_dict() for key in keys],
    }


def trace_mismatch(con, mismatch_id: str) -> dict:
    """`returnsync trace --mismatch ID`: the mismatch and the records behind it."""
    if not _exists(con, "recon", "mismatches"):
        raise ConfigError("the published copy has no recon.mismatches: run `returnsync run` first")
    text = mismatch_id.strip()
    rows = _rows(
        con,
        "select mismatch_id, rule, severity, rma_number, sku, warehouse, location, expected, "
        "actual, amount_delta, qty_delta, first_seen_at, last_seen_at, status "
        "from recon.mismatches where mismatch_id = ? or (length(?) >= 6 and starts_with("
        "mismatch_id, ?)) order by mismatch_id",
        [text, text, text],
    )
    if not rows:
        raise NotFound(f"no mismatch {text!r} in the published copy")
    if len(rows) > 1:
        raise ConfigError(
            f"{len(rows)} mismatches start with {text!r}: give more of the id "
            f"({', '.join(r['mismatch_id'] for r in rows[:5])})"
        )
    m = rows[0]
    as_of = run_as_of(con)
    mismatch = {
        k: (_iso(v) if isinstance(v, datetime) else (str(v) if v is not None else None))
        for k, v in m.items()
    }
    out: dict = {"mismatch": mismatch, "as_of": _iso(as_of), "returns": [], "records": []}
    keys = []
    if m["rule"] != "unmatched_receipt" and m["rma_number"]:
        keys = [
            r[0]
            for r in con.execute(
                "select return_key from marts.returns where rma_normalized = ?",
                [normalize_rma(m["rma_number"])],
            ).fetchall()
        ]
    for key in keys:
        out["returns"].append(timeline(con, key, as_of, sku=m["sku"] or None).as_dict())
    if m["rule"] == "unmatched_receipt":
        for row in _rows(
            con,
            "select receipt_id, received_at, sku, quantity, warehouse, dc_code, source_record_id, "
            "source_position from marts.receipts where return_key is null "
            "and coalesce(upper(trim(rma_number_scanned)), '') = coalesce(?, '') "
            "and sku is not distinct from ? order by received_at, receipt_id",
            [m["rma_number"] or "", m["sku"]],
        ):
            k, n = source_of("wms", row["source_position"])
            out["records"].append(
                Event(
                    "received",
                    row["received_at"],
                    "wms",
                    k,
                    n,
                    row["source_record_id"],
                    row["source_position"],
                    f"qty {row['quantity']} at {row['warehouse'] or row['dc_code']} (unlinked)",
                    (row["sku"],) if row["sku"] else (),
                ).as_dict()
            )
    return out


# -- overdue transitions and percentiles -------------------------------------------------------
def overdue(con, as_of: datetime | None = None) -> dict:
    """Open transitions older than their SLA, oldest first (`returnsync trace --overdue`)."""
    _require(con)
    as_of = as_of or run_as_of(con)
    rows = _rows(
        con,
        "select rma_number, channel, warehouse, transition, from_stage, to_stage, started_at, "
        "open_age_h, sla_h, open_age_h - sla_h as overdue_h, start_system, start_record_id, "
        "start_position from marts.return_stage_latencies where is_overdue "
        "order by overdue_h desc, rma_number, transition_order",
    )
    out = []
    for row in rows:
        k, n = source_of(row["start_system"], row["start_position"])
        out.append(
            {
                "rma_number": row["rma_number"],
                "channel": row["channel"],
                "warehouse": row["warehouse"],
                "transition": row["transition"],
                "missing": row["to_stage"],
                "since": _iso(row["started_at"]),
                "age_h": _round(row["open_age_h"]),
                "sla_h": _round(row["sla_h"]),
                "overdue_h": _round(row["overdue_h"]),
                "source": {
                    "kind": k,
                    "name": n,
                    "key": row["start_record_id"],
                    "position": row["start_position"],
                },
            }
        )
    return {"as_of": _iso(as_of), "overdue": out}


def percentiles(con, table: str = "marts.return_stage_latencies") -> list[dict]:
    """p50/p90/p99 hours per transition, for all / each channel / each warehouse and each window.

    One row per (transition, dimension, value, window): dimension is `all`, `channel` or
    `warehouse`; `n` closed transitions ended in (as_of - window, as_of]; the percentiles are
    DuckDB's quantile_cont (null when n = 0)."""
    windows = " union all ".join(
        f"select '{name}' as win, {days} as days" for name, days in WINDOWS
    )
    qs = ", ".join(
        f"cast(quantile_cont(latency_h, {q}) as double) as {name}" for name, q in QUANTILES
    )
    query = f"""
        with w as ({windows}),
        rows_ as (
            select s.*, w.win from {table} as s cross join w
            where not s.is_open
              and s.ended_at > s.as_of - to_days(w.days) and s.ended_at <= s.as_of
        ),
        dims as (
            select transition, 'all' as dimension, 'all' as value, win, latency_h from rows_
            union all
            select transition, 'channel', channel, win, latency_h from rows_
            union all
            select transition, 'warehouse', warehouse, win, latency_h from rows_
        )
        select transition, dimension, value, win as "window", count(*) as n, {qs}
        from dims group by all order by transition, dimension, value, "window"
    """
    return _rows(con, query)


def transition_health(con, table: str = "marts.return_stage_latencies") -> list[dict]:
    """Per transition: SLA, 7-day p90, open and overdue counts, the oldest overdue age."""
    return _rows(
        con,
        f"""
        with t as (select unnest(?::varchar[]) as transition),
        s as (select * from {table})
        select
            t.transition,
            (select max(sla_h) from s where s.transition = t.transition) as sla_h,
            (select cast(quantile_cont(latency_h, 0.9) as double) from s
              where s.transition = t.transition and not is_open
                and ended_at > as_of - interval 7 day and ended_at <= as_of) as p90_7d_h,
            (select count(*) from s where s.transition = t.transition
                and not is_open and ended_at > as_of - interval 7 day
                and ended_at <= as_of) as n_7d,
            (select count(*) from s where s.transition = t.transition and is_open) as open,
            (select count(*) from s where s.transition = t.transition and is_overdue)
                as overdue,
            (select max(open_age_h) from s where s.transition = t.transition and is_overdue)
                as oldest_overdue_h,
            (select list(distinct warehouse order by warehouse) from s
              where s.transition = t.transition and is_overdue) as overdue_warehouses
        from t
        """,
        [list(TRANSITIONS)],
    )


def bottleneck(health: list[dict]) -> tuple[str | None, float]:
    """The transition furthest over (or closest to) its SLA now: the largest of its 7-day p90
    and its oldest overdue open age, as a share of the SLA. (None, 0) without data."""
    best, score = None, 0.0
    for h in health:
        if not h["sla_h"]:
            continue
        worst = max(h["p90_7d_h"] or 0.0, h["oldest_overdue_h"] or 0.0)
        share = worst / h["sla_h"]
        if best is None or share > score:
            best, score = h["transition"], share
    return (best, score) if best is not None and score > 0 else (None, 0.0)


# -- rendering ---------------------------------------------------------------------------------
def _fmt_h(x: float | None) -> str:
    if x is None:
        return ""
    sign = "-" if x < 0 else ""
    x = abs(x)
    if x >= 48:
        return f"{sign}{x / 24:.1f}d"
    return f"{sign}{x:.1f}h"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def _timeline_text(t: dict) -> str:
    head = (
        f"RMA {t['rma_number']}  channel {t['channel'] or '-'}  warehouse {t['warehouse'] or '-'}"
        f"  status {t['status']}  order {t['order_ref'] or '-'}"
        f"  tracking {t['tracking_number'] or '-'}"
    )
    rows = []
    for e in t["events"]:
        src = e["source"]
        rows.append(
            [
                e["stage"],
                e["at"] or "",
                _fmt_h(e["gap_h"]) if e["gap_h"] is not None else "",
                e["system"] or "",
                f"{src['kind'] or ''} {src['name'] or ''}".strip(),
                src["key"] or "",
                src["position"] or "",
                e["detail"],
            ]
        )
    for m in t["missing"]:
        late = (
            f"OVERDUE {_fmt_h(m['overdue_h'])}"
            if m["overdue_h"] is not None
            else f"due {m['due_at'] or '?'}"
        )
        rows.append(
            [
                m["stage"],
                "MISSING",
                "",
                "",
                "",
                "",
                "",
                f"{late} (SLA {_fmt_h(m['sla_h'])}, {m['after']})",
            ]
        )
    body = _table(["stage", "at", "gap", "system", "source", "key", "position", "detail"], rows)
    return f"{head}\n{body}\n"


def render_trace(result: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    parts = []
    if "mismatch" in result:
        m = result["mismatch"]
        parts.append(
            f"mismatch {m['mismatch_id']}: {m['rule']} ({m['severity']}, {m['status']})  "
            f"RMA {m['rma_number'] or '-'}  sku {m['sku'] or '-'}  "
            f"warehouse {m['warehouse'] or '-'}  expected {m['expected'] or '-'}  "
            f"actual {m['actual'] or '-'}\n"
        )
        if result["records"]:
            rows = [
                [
                    e["stage"],
                    e["at"] or "",
                    e["system"] or "",
                    f"{e['source']['kind']} {e['source']['name']}",
                    e["source"]["key"] or "",
                    e["source"]["position"] or "",
                    e["detail"],
                ]
                for e in result["records"]
            ]
            parts.append(
                _table(["stage", "at", "system", "source", "key", "position", "detail"], rows)
                + "\n"
            )
    else:
        n = len(result["returns"])
        parts.append(
            f"{n} return(s) matched by {result['matched_by']} {result['query']!r}"
            f" (as of {result['as_of']})\n"
        )
    for t in result["returns"]:
        parts.append("\n" + _timeline_text(t))
    return "".join(parts)


def render_overdue(result: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    rows = [
        [
            o["rma_number"],
            o["channel"],
            o["warehouse"],
            TRANSITION_LABELS[o["transition"]],
            o["since"],
            _fmt_h(o["age_h"]),
            _fmt_h(o["sla_h"]),
            _fmt_h(o["overdue_h"]),
            f"{o['source']['kind'] or ''} {o['source']['name'] or ''}".strip(),
            o["source"]["key"] or "",
        ]
        for o in result["overdue"]
    ]
    head = f"{len(rows)} open transition(s) older than their SLA (as of {result['as_of']})\n"
    table = _table(
        [
            "rma",
            "channel",
            "warehouse",
            "transition",
            "since",
            "age",
            "sla",
            "overdue",
            "source",
            "key",
        ],
        rows,
    )
    return head + table + "\n"
