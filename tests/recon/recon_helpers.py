"""Small helpers for the recon tests: a warehouse holding what dbt's recon models would hold."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import duckdb

CURRENT_DDL = """
create schema if not exists recon;
create or replace table recon.recon_run (as_of timestamptz);
create or replace table recon.recon_mismatches_current (
    mismatch_id varchar, rule varchar, severity varchar, rma_number varchar, sku varchar,
    warehouse varchar, location varchar, expected varchar, actual varchar,
    amount_delta decimal(18,4), qty_delta decimal(18,3), detected_at timestamptz
);
"""


def dbt_mismatch_id(
    rule: str,
    key_shape: str,
    rma: str | None,
    sku: str | None = None,
    warehouse: str | None = None,
    location: str | None = None,
) -> str:
    """The id as recon_mismatches_current derives it (written again here, independently):
    md5 of `rule|rma|product|place` by the rule's key shape, empty strings for nulls."""
    import hashlib

    product = "" if key_shape == "rma" else sku or ""
    place = {"rma_sku": location, "scanned_rma_sku": warehouse}.get(key_shape) or ""
    return hashlib.md5("|".join([rule, rma or "", product, place]).encode()).hexdigest()


def mismatch(rule: str, rma: str | None, sku: str | None = None, **extra) -> dict:
    """A current-mismatch row; the id is derived like dbt derives it (rule and natural key by
    the catalog's key shape; `catalog=` another catalog)."""
    from pipelines.lib.recon.catalog import CATALOG, by_name

    entry = by_name(extra.pop("catalog", CATALOG))[rule]
    mismatch_id = dbt_mismatch_id(
        rule, entry.key_shape, rma, sku, extra.get("warehouse"), extra.get("location")
    )
    return {
        "mismatch_id": mismatch_id,
        "rule": rule,
        "severity": entry.severity,
        "rma_number": rma,
        "sku": sku,
        "warehouse": extra.get("warehouse"),
        "location": extra.get("location"),
        "expected": extra.get("expected"),
        "actual": extra.get("actual"),
        "amount_delta": extra.get("amount_delta"),
        "qty_delta": extra.get("qty_delta"),
    }


def publish(con: duckdb.DuckDBPyConnection, as_of: datetime, rows: list[dict]) -> None:
    """Replace the current mismatches and the run's as_of, as a dbt build would."""
    con.execute(CURRENT_DDL)
    con.execute("insert into recon.recon_run values (?)", [as_of])
    for r in rows:
        con.execute(
            "insert into recon.recon_mismatches_current values (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                r["mismatch_id"],
                r["rule"],
                r["severity"],
                r["rma_number"],
                r["sku"],
                r["warehouse"],
                r["location"],
                r["expected"],
                r["actual"],
                None if r["amount_delta"] is None else Decimal(str(r["amount_delta"])),
                None if r["qty_delta"] is None else Decimal(str(r["qty_delta"])),
                as_of,
            ],
        )


MONEY_DDL = """
create schema if not exists recon;
create table if not exists recon.recon_return_money (
    rma_number varchar, side varchar, currency varchar, amount decimal(18,4), first_at timestamptz
);
create table if not exists recon.recon_line_money (
    rma_number varchar, sku varchar, currency varchar, unit_price decimal(18,4),
    last_inspected_at timestamptz
);
"""


def publish_money(
    con: duckdb.DuckDBPyConnection,
    returns: list[tuple] = (),
    lines: list[tuple] = (),
) -> None:
    """The money facts dbt's models/recon/report/ would hold: `returns` rows are
    (rma, side, currency, amount, first_at) with side return|refund|credit; `lines` rows are
    (rma, sku, currency, unit_price, last_inspected_at)."""
    con.execute(MONEY_DDL)
    for row in returns:
        con.execute("insert into recon.recon_return_money values (?, ?, ?, ?, ?)", list(row))
    for row in lines:
        con.execute("insert into recon.recon_line_money values (?, ?, ?, ?, ?)", list(row))


def publish_rates(
    con: duckdb.DuckDBPyConnection, rates: list[tuple], company: str | None = "EUR"
) -> None:
    """The fx rates staging view and the settings seed's company currency, as dbt would build
    them: `rates` rows are (date, currency, rate_to_company)."""
    con.execute("create schema if not exists staging")
    con.execute("create schema if not exists seeds")
    con.execute(
        "create or replace table staging.stg_reference__fx_rates "
        "(rate_date date, currency varchar, rate_to_company decimal(18,8))"
    )
    for row in rates:
        con.execute("insert into staging.stg_reference__fx_rates values (?, ?, ?)", list(row))
    con.execute(
        "create or replace table seeds.recon_settings "
        "(setting varchar, value decimal(18,4), description varchar, currency varchar)"
    )
    if company:
        con.execute(
            "insert into seeds.recon_settings values ('company_currency', 1, '', ?)", [company]
        )
