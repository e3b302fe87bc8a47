"""A hand-made warehouse for the write-back tests: recon.mismatches and the tables the planner
reads, so each test states exactly the data it plans from (no dbt run).

The tables are built from the dbt project itself, never from a copy of its DDL: the marts from
their enforced contracts (`models/marts/_marts.yml`: every column, with its type), the ERP sales
staging model from the columns its YAML documents, and the settings seed from its CSV with the
types of `seeds/_seeds.yml`. A column renamed or retyped in dbt is renamed or retyped here, and a
planner query that still uses the old name fails these tests. Rows are inserted by column name.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

import duckdb
import yaml

from pipelines.lib.recon.catalog import by_name
from pipelines.lib.recon.lifecycle import SEVERITY
from pipelines.lib.recon.lifecycle import ensure_tables as ensure_recon_tables
from pipelines.lib.warehouse import connect
from pipelines.lib.writeback.plan import RULE_ACTION
from pipelines.settings import DBT_PROJECT_DIR

SEEN = datetime(2026, 11, 20, 12, tzinfo=UTC)
MARTS = ("returns", "return_lines", "credits")
CATALOG_BY_NAME = by_name()


def _models(path: Path) -> dict[str, dict]:
    return {m["name"]: m for m in yaml.safe_load(path.read_text(encoding="utf-8"))["models"]}


@cache
def dbt_ddl() -> str:
    """`create table` statements for what the planner reads, from the dbt project's files."""
    models = DBT_PROJECT_DIR / "models"
    statements = ["create schema if not exists marts", "create schema if not exists staging"]
    marts = _models(models / "marts" / "_marts.yml")
    for name in MARTS:
        model = marts[name]
        assert model["config"]["contract"]["enforced"], f"marts.{name} has no enforced contract"
        cols = ", ".join(f'"{c["name"]}" {c["data_type"]}' for c in model["columns"])
        statements.append(f"create table if not exists marts.{name} ({cols})")
    # staging has no contract: the columns its YAML documents, typed by the project's naming
    sales = _models(models / "staging" / "erp" / "_erp__models.yml")["stg_erp__sales"]

    def staging_type(col: str) -> str:
        if col.endswith("_id"):
            return "bigint"
        if col.startswith("is_"):
            return "boolean"
        return "timestamp with time zone" if col.endswith("_at") else "varchar"

    cols = ", ".join(f'"{c["name"]}" {staging_type(c["name"])}' for c in sales["columns"])
    statements.append(f"create table if not exists staging.stg_erp__sales ({cols})")
    # the planner's input, from its enforced contract
    candidates = _models(models / "recon" / "_adjustment_candidates.yml")["adjustment_candidates"]
    assert candidates["config"]["contract"]["enforced"]
    cols = ", ".join(f'"{c["name"]}" {c["data_type"]}' for c in candidates["columns"])
    statements.append("create schema if not exists recon")
    statements.append(f"create table if not exists recon.adjustment_candidates ({cols})")
    return ";\n".join(statements) + ";"


def _load_settings_seed(con: duckdb.DuckDBPyConnection) -> None:
    """seeds.recon_settings as dbt seeds it: the CSV, with the column types of _seeds.yml."""
    seeds = DBT_PROJECT_DIR / "seeds"
    config = {s["name"]: s for s in yaml.safe_load((seeds / "_seeds.yml").read_text())["seeds"]}
    types = config["recon_settings"]["config"]["column_types"]
    with open(seeds / "recon_settings.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    con.execute("create schema if not exists seeds")
    cols = ", ".join(f'"{c}" {types.get(c, "varchar")}' for c in rows[0])
    con.execute(f"create or replace table seeds.recon_settings ({cols})")
    marks = ", ".join("?" for _ in rows[0])
    con.executemany(
        f"insert into seeds.recon_settings values ({marks})", [list(r.values()) for r in rows]
    )


def _insert(con: duckdb.DuckDBPyConnection, table: str, **values) -> None:
    """Insert one row by column name (the other columns stay null)."""
    cols = ", ".join(f'"{c}"' for c in values)
    marks = ", ".join("?" for _ in values)
    con.execute(f"insert into {table} ({cols}) values ({marks})", list(values.values()))


def _key(*parts: object) -> str:
    return hashlib.md5("|".join(str(p) for p in parts).encode()).hexdigest()


def make_warehouse(path: Path) -> Path:
    con = connect(path)
    try:
        ensure_recon_tables(con)
        con.execute(dbt_ddl())
        _load_settings_seed(con)
    finally:
        con.close()
    return path


@dataclass
class ReturnSpec:
    """One return with one ERP return line (enough for every write-back case)."""

    rma: str
    sku: str
    erp_return_order_id: int | None = 9001
    erp_return_line_id: int | None = 9101
    party_id: int | None = 1
    qty_authorized: Decimal = Decimal(2)
    unit_price: Decimal = Decimal("89.00")
    currency: str = "EUR"
    erp_credited_qty: Decimal | None = None  # an ERP credit note already crediting the line
    channel_refund: Decimal | None = None


def add_return(con: duckdb.DuckDBPyConnection, spec: ReturnSpec) -> None:
    return_key = _key("return", spec.rma)
    line_key = _key("line", spec.rma, spec.sku)
    _insert(
        con,
        "marts.returns",
        return_key=return_key,
        rma_number=spec.rma,
        erp_return_order_id=spec.erp_return_order_id,
        currency=spec.currency,
    )
    _insert(
        con,
        "marts.return_lines",
        return_line_key=line_key,
        return_key=return_key,
        rma_number=spec.rma,
        erp_return_line_id=spec.erp_return_line_id,
        sku=spec.sku,
        qty_authorized=spec.qty_authorized,
        unit_price=spec.unit_price,
        currency=spec.currency,
    )
    if spec.erp_return_order_id is not None and spec.party_id is not None:
        known = con.execute(
            "select count(*) from staging.stg_erp__sales where sale_id = ?",
            [spec.erp_return_order_id],
        ).fetchone()[0]
        if not known:
            _insert(
                con,
                "staging.stg_erp__sales",
                sale_id=spec.erp_return_order_id,
                party_id=spec.party_id,
                is_deleted=False,
            )
    if spec.erp_credited_qty is not None:
        _insert(
            con,
            "marts.credits",
            return_key=return_key,
            return_line_key=line_key,
            system="erp",
            is_channel_refund=False,
            amount=spec.erp_credited_qty * spec.unit_price,
            currency=spec.currency,
            quantity=spec.erp_credited_qty,
        )
    if spec.channel_refund is not None:
        _insert(
            con,
            "marts.credits",
            return_key=return_key,
            system="shopify",
            is_channel_refund=True,
            amount=spec.channel_refund,
            currency=spec.currency,
        )


def add_mismatch(
    con: duckdb.DuckDBPyConnection,
    rule: str,
    rma: str,
    sku: str | None = None,
    *,
    location: str | None = None,
    amount_delta: Decimal | str | None = None,
    qty_delta: Decimal | str | None = None,
    status: str = "open",
    qty_posted: Decimal | str | None = None,
    move_to: tuple[str, Decimal | str] | None = None,
    open_return_shipment_id: int | None = None,
    draft_credit_note_id: int | None = None,
) -> str:
    """A mismatch in recon.mismatches and, for a rule with an automatic fix, its rows of
    recon.adjustment_candidates as the dbt model would give them from the rows `add_return`
    wrote (one per ERP return line; the line columns null when the return has none).

    `qty_posted` (units the ERP posted at `location`), `move_to` (the line's short location and
    units short there), `open_return_shipment_id` and `draft_credit_note_id` (the ERP's own
    unfinished documents as CDC shows them) are what the marts here do not hold."""
    mismatch_id = _key(rule, rma, sku or "", location or "")
    _add_mismatch_row(con, mismatch_id, rule, rma, sku, location, amount_delta, qty_delta, status)
    con.execute("delete from recon.adjustment_candidates where mismatch_id = ?", [mismatch_id])
    action = RULE_ACTION.get(rule)
    if action is not None:
        stock = CATALOG_BY_NAME[rule].family == "stock"
        con.execute(
            f"""
            insert into recon.adjustment_candidates
            with refunds as (
                select return_key, min(currency) as currency, sum(amount) as amount
                from marts.credits where is_channel_refund and amount > 0 group by return_key
            ),
            erp as (
                select return_key, currency, sum(amount) as amount
                from marts.credits where system = 'erp' group by return_key, currency
            ),
            credited as (
                select return_line_key, sum(abs(quantity)) as quantity
                from marts.credits where system = 'erp' and quantity is not null
                group by return_line_key
            )
            select ?, ?, ?, ?, ?, ?, ?, ?::decimal(18,3), ?::decimal(18,4),
                   r.return_key, r.erp_return_order_id, s.party_id, null,
                   coalesce(f.currency, r.currency), f.amount, e.amount, 0.01,
                   l.return_line_key, l.erp_return_line_id, l.sku, abs(l.qty_authorized),
                   coalesce(c.quantity, 0), l.unit_price, l.currency,
                   coalesce(-?::decimal(18,3) + ?::decimal(18,3), 0), ?,
                   ?, ?, ?, ?
            from (select 1) as one
            left join marts.returns as r on r.rma_number = ?
            left join marts.return_lines as l
                on l.return_key = r.return_key and l.erp_return_line_id is not null
                and ({'l.sku = ?' if stock else 'true or ? is null'})
            left join staging.stg_erp__sales as s
                on s.sale_id = r.erp_return_order_id and not s.is_deleted
            left join refunds as f on f.return_key = r.return_key
            left join erp as e on e.return_key = r.return_key and e.currency = f.currency
            left join credited as c on c.return_line_key = l.return_line_key
            """,
            [
                mismatch_id, rule, action, rma, sku, location.rsplit("-", 1)[0] if location
                else None, location, qty_delta, amount_delta,
                qty_delta or 0, qty_posted or 0, qty_posted or 0,
                move_to[0] if move_to else None, move_to[1] if move_to else None,
                open_return_shipment_id, draft_credit_note_id, rma, sku,
            ],
        )  # fmt: skip
    return mismatch_id


def _add_mismatch_row(con, mismatch_id, rule, rma, sku, location, amount_delta, qty_delta, status):
    warehouse = location.rsplit("-", 1)[0] if location else None
    con.execute(
        """
        insert or replace into recon.mismatches (mismatch_id, rule, severity, rma_number, sku,
            warehouse, location, expected, actual, amount_delta, qty_delta, first_seen_at,
            last_seen_at, status, resolved_at)
        values (?, ?, ?, ?, ?, ?, ?, null, null, ?, ?, ?, ?, ?, ?)
        """,
        [
            mismatch_id,
            rule,
            SEVERITY[rule],
            rma,
            sku,
            warehouse,
            location,
            amount_delta,
            qty_delta,
            SEEN,
            SEEN,
            status,
            SEEN if status == "resolved" else None,
        ],
    )
    return mismatch_id


def set_mismatch(con: duckdb.DuckDBPyConnection, mismatch_id: str, **values) -> None:
    """Change a mismatch as a later recon run would; `status="resolved"` adds its history."""
    sets = ", ".join(f"{k} = ?" for k in values)
    con.execute(
        f"update recon.mismatches set {sets} where mismatch_id = ?",
        [*values.values(), mismatch_id],
    )
    if values.get("status") == "resolved":
        con.execute(
            "insert into recon.mismatch_history values (?, 'resolved', current_timestamp, 'recon')",
            [mismatch_id],
        )


def adjustments(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    """writeback.adjustments by mismatch id (the latest per mismatch)."""
    cursor = con.execute("select * from writeback.adjustments order by created_at, adjustment_id")
    names = [d[0] for d in cursor.description]
    out: dict[str, dict] = {}
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        out[record["mismatch_id"]] = record
    return out


def open_exceptions(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    cursor = con.execute("select * from writeback.exceptions where status = 'open'")
    names = [d[0] for d in cursor.description]
    return {
        r["mismatch_id"]: r
        for r in (dict(zip(names, row, strict=True)) for row in cursor.fetchall())
    }
