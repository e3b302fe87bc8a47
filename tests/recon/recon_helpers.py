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
