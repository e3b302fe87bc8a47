"""A hand-made warehouse for the write-back tests: recon.mismatches and the few marts columns the
planner reads, created with SQL (no dbt), so each test states exactly the data it plans from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from pipelines.lib.recon.lifecycle import SEVERITY
from pipelines.lib.recon.lifecycle import ensure_tables as ensure_recon_tables
from pipelines.lib.warehouse import connect

SEEN = datetime(2026, 11, 20, 12, tzinfo=UTC)

MARTS_DDL = """
create schema if not exists marts;
create schema if not exists staging;
create schema if not exists seeds;
create table if not exists marts.returns (
    return_key varchar, rma_number varchar, erp_return_order_id bigint, currency varchar
);
create table if not exists marts.return_lines (
    return_line_key varchar, return_key varchar, rma_number varchar, erp_return_line_id bigint,
    sku varchar, qty_authorized decimal(12,3), unit_price decimal(18,4), currency varchar
);
create table if not exists marts.credits (
    return_key varchar, return_line_key varchar, system varchar, is_channel_refund boolean,
    amount decimal(18,4), currency varchar, quantity decimal(12,3)
);
create table if not exists staging.stg_erp__sales (
    sale_id bigint, party_id bigint, is_deleted boolean
);
create or replace table seeds.recon_settings (setting varchar, value decimal(18,4));
insert into seeds.recon_settings values ('auto_approve_amount', 250), ('auto_approve_quantity', 10);
"""


def _key(*parts: object) -> str:
    return hashlib.md5("|".join(str(p) for p in parts).encode()).hexdigest()


def make_warehouse(path: Path) -> Path:
    con = connect(path)
    try:
        ensure_recon_tables(con)
        con.execute(MARTS_DDL)
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
    con.execute(
        "insert into marts.returns values (?, ?, ?, ?)",
        [return_key, spec.rma, spec.erp_return_order_id, spec.currency],
    )
    con.execute(
        "insert into marts.return_lines values (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            line_key,
            return_key,
            spec.rma,
            spec.erp_return_line_id,
            spec.sku,
            spec.qty_authorized,
            spec.unit_price,
            spec.currency,
        ],
    )
    if spec.erp_return_order_id is not None and spec.party_id is not None:
        con.execute(
            "insert into staging.stg_erp__sales select ?, ?, false where not exists "
            "(select 1 from staging.stg_erp__sales where sale_id = ?)",
            [spec.erp_return_order_id, spec.party_id, spec.erp_return_order_id],
        )
    if spec.erp_credited_qty is not None:
        con.execute(
            "insert into marts.credits values (?, ?, 'erp', false, ?, ?, ?)",
            [
                return_key,
                line_key,
                spec.erp_credited_qty * spec.unit_price,
                spec.currency,
                spec.erp_credited_qty,
            ],
        )
    if spec.channel_refund is not None:
        con.execute(
            "insert into marts.credits values (?, null, 'shopify', true, ?, ?, null)",
            [return_key, spec.channel_refund, spec.currency],
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
) -> str:
    mismatch_id = _key(rule, rma, sku or "", location or "")
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
