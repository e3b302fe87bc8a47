"""The canonical model (dbt staging -> intermediate -> marts) on a hand-worked landscape.

Raw rows are written straight into the raw tables (tests/dbt/landscape.py), dbt builds the
staging, intermediate and mart layers (with their data tests and unit tests), and the marts are
compared with the rows worked out by hand. The same history landed with noise (duplicates, out of
order, late events, redeliveries, overlapping files) in two batches, built incrementally, gives the
same marts; a second build and a full refresh give identical tables.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest

from pipelines.lib import warehouse
from tests.dbt.cli import dbt
from tests.dbt.landscape import INGESTED, RawWriter, land_batch, land_clean, noisy_batches

AS_OF = "2026-03-20T00:00:00+00:00"
MARTS = (
    "returns",
    "return_lines",
    "receipts",
    "dispositions",
    "credits",
    "inventory_adjustments",
    "return_events",
    "returns_kpis",
)


def dbt_build(db: Path, work: Path, *extra: str, tests: bool = True, as_of: str = AS_OF) -> None:
    """`dbt build` of seeds and every layer but recon (the reconciliation engineer's area) on
    `db` at `as_of`, with the data and unit tests unless `tests` is false."""
    dbt(
        db,
        work,
        "build",
        "--exclude",
        "path:models/recon",
        *([] if tests else ["resource_type:test", "resource_type:unit_test"]),
        "--vars",
        json.dumps({"as_of": as_of}),
        *extra,
    )


def snapshot(db: Path, exclude: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every mart as a sorted list of rows (optionally without some columns)."""
    with duckdb.connect(str(db), read_only=True) as con:
        out = {}
        for mart in MARTS:
            cols = [
                c
                for (c,) in con.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'marts' and table_name = ? order by ordinal_position",
                    [mart],
                ).fetchall()
                if c not in exclude
            ]
            rows = con.execute(f"select {', '.join(cols)} from marts.{mart}").fetchall()
            out[mart] = sorted(rows, key=repr)
        return out


def query(db: Path, sql: str) -> set[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return set(con.execute(sql).fetchall())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dbt_canonical")


@pytest.fixture(scope="module")
def clean(work) -> dict:
    """The landscape landed once, in order, built twice."""
    db = work / "clean.duckdb"
    with warehouse.connection(db) as con:
        land_clean(con)
    dbt_build(db, work)
    first = snapshot(db)
    dbt_build(db, work, tests=False)  # nothing new: the incremental models recompute nothing
    return {"db": db, "first": first, "second": snapshot(db)}


@pytest.fixture(scope="module")
def noisy(work) -> dict:
    """The same history landed with noise in two batches, built after each, then fully refreshed."""
    db = work / "noisy.duckdb"
    batch1, batch2 = noisy_batches()
    with warehouse.connection(db) as con:
        writer = RawWriter(con)
        land_batch(con, writer, batch1, INGESTED)
    dbt_build(db, work, tests=False)
    with warehouse.connection(db) as con:
        writer.con = con
        land_batch(con, writer, batch2, INGESTED + timedelta(hours=1))
    dbt_build(db, work)
    incremental = snapshot(db)
    dbt_build(db, work, "--full-refresh", tests=False)
    return {"db": db, "incremental": incremental, "full": snapshot(db)}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# -- the hand-worked landscape -----------------------------------------------------------------


def test_returns(clean):
    rows = query(
        clean["db"],
        "select rma_number, rma_normalized, channel, status, erp_return_order_id, is_received, "
        "warehouse, currency, outcome, order_ref from marts.returns",
    )
    assert rows == {
        ("LR-1001", "LR1001", "shopify", "credited", 101, True, "WH-E", "EUR", "refund", "#1001"),
        ("LR-1002", "LR1002", "shopify", "closed", 102, True, "WH-W", "USD", "exchange", "#1002"),
        (
            "LR-1003",
            "LR1003",
            "shopify",
            "credited",
            103,
            False,
            "WH-E",
            "GBP",
            "keep_item",
            "#1003",
        ),
        (
            "D5nk2RrqRRMA",
            "D5NK2RRQRRMA",
            "amazon",
            "closed",
            104,
            True,
            "WH-E",
            "USD",
            "refund",
            "111-2223334-5556667",
        ),
        ("CR-20001", "CR20001", "b2b", "inspected", 105, True, "WH-W", "EUR", "refund", "PO-77"),
        ("LR-1004", "LR1004", "shopify", "approved", None, False, None, "EUR", "refund", "#1004"),
    }
    # deterministic keys: md5 of the natural key
    keys = query(clean["db"], "select rma_normalized, return_key from marts.returns")
    assert all(key == md5(f"return|{rma}") for rma, key in keys)


def test_return_lines(clean):
    rows = query(
        clean["db"],
        "select rma_number, sku, channel_sku, is_sku_mapped, erp_return_line_id, qty_requested, "
        "qty_authorized, qty_received, qty_inspected, reason, unit_price, warehouse "
        "from marts.return_lines",
    )
    assert rows == {
        # partial return: 2 of the 3 ordered, split over two inspections
        (
            "LR-1001",
            "P10001",
            "SH-10001",
            True,
            1011,
            D(2),
            D(2),
            D(2),
            D(2),
            "size_fit",
            D(50),
            "WH-E",
        ),
        (
            "LR-1001",
            "P10002",
            "SH-10002",
            True,
            1012,
            D(1),
            D(1),
            D(1),
            D(1),
            "defective",
            D(30),
            "WH-E",
        ),
        (
            "LR-1002",
            "P10005",
            "SH-10005",
            True,
            1021,
            D(1),
            D(1),
            D(1),
            D(1),
            "size_fit",
            D(40),
            "WH-W",
        ),
        (
            "LR-1003",
            "P10001",
            "SH-10001",
            True,
            1031,
            D(1),
            D(1),
            D(0),
            D(0),
            "damaged_in_transit",
            D(50),
            "WH-E",
        ),
        (
            "D5nk2RrqRRMA",
            "P10003",
            "AMZ-10003-FBM",
            True,
            1041,
            D(1),
            D(1),
            D(1),
            D(1),
            "defective",
            D(100),
            "WH-E",
        ),
        (
            "CR-20001",
            "P10004",
            "B2B10004",
            True,
            1051,
            D(5),
            D(5),
            D(5),
            D(5),
            "defective",
            D("12.5"),
            "WH-W",
        ),
        (
            "LR-1004",
            None,
            "SH-UNKNOWN",
            False,
            None,
            D(1),
            None,
            D(0),
            D(0),
            "other",
            D("9.99"),
            None,
        ),
    }


def test_receipts_link_by_rule(clean):
    rows = query(
        clean["db"],
        "select r.receipt_id, t.rma_number, r.link_rule, r.warehouse from marts.receipts r "
        "left join marts.returns t using (return_key)",
    )
    assert rows == {
        (3001, "LR-1001", "rma_exact", "WH-E"),
        (3002, "LR-1001", "rma_exact", "WH-E"),
        (3003, "LR-1002", "tracking_number", "WH-W"),  # no RMA scanned
        (3004, "D5nk2RrqRRMA", "rma_normalized", "WH-E"),  # upper-cased
        (3005, "CR-20001", "rma_normalized", "WH-W"),  # mistyped `cr 20001`
        (3006, None, None, "WH-E"),  # links to nothing
    }


def test_dispositions(clean):
    rows = query(
        clean["db"],
        "select d.inspection_id, t.rma_number, d.sku, d.disposition, d.location_code, d.quantity "
        "from marts.dispositions d join marts.returns t using (return_key)",
    )
    assert rows == {
        (4001, "LR-1001", "P10001", "restock", "WH-E-STO", D(1)),
        (4002, "LR-1001", "P10001", "scrap", "WH-E-SCR", D(1)),
        (4003, "LR-1001", "P10002", "refurbish", "WH-E-RFB", D(1)),
        (4004, "LR-1002", "P10005", "restock", "WH-W-STO", D(1)),
        (4005, "CR-20001", "P10004", "refurbish", "WH-W-RFB", D(5)),
        (4006, "D5nk2RrqRRMA", "P10003", "return_to_vendor", "WH-E-RTV", D(1)),
    }


def test_credits(clean):
    rows = query(
        clean["db"],
        "select t.rma_number, c.system, c.kind, c.is_channel_refund, c.external_id, c.sku, "
        "c.amount, c.currency, c.quantity, c.return_line_key is not null "
        "from marts.credits c join marts.returns t using (return_key)",
    )
    assert rows == {
        # the credit note's 154.70 spread over its lines by value: 100/130 and 30/130
        ("LR-1001", "erp", "credit_note", False, "CN601", "P10001", D("119.00"), "EUR", D(2), True),
        ("LR-1001", "erp", "credit_note", False, "CN601", "P10002", D("35.70"), "EUR", D(1), True),
        # only the successful refund transaction moves money
        ("LR-1001", "shopify", "refund", True, "801", "P10001", D("119.00"), "EUR", D(2), True),
        ("LR-1001", "shopify", "refund", True, "801", "P10002", D("35.70"), "EUR", D(1), True),
        # keep-item: refunded and credited, nothing received; refund 803 failed, so it is absent
        ("LR-1003", "erp", "credit_note", False, "CN602", "P10001", D("60.00"), "GBP", D(1), True),
        ("LR-1003", "shopify", "refund", True, "802", "P10001", D("60.00"), "GBP", D(1), True),
        # foreign currency, the newer Amazon report's refunded amount
        (
            "D5nk2RrqRRMA",
            "erp",
            "credit_note",
            False,
            "CN603",
            "P10003",
            D("107.25"),
            "USD",
            D(1),
            True,
        ),
        (
            "D5nk2RrqRRMA",
            "amazon",
            "refund",
            True,
            "D5nk2RrqRRMA",
            "P10003",
            D("107.25"),
            "USD",
            D(1),
            True,
        ),
    }
    # a note's rows sum to its total exactly
    assert query(
        clean["db"], "select sum(amount) from marts.credits where external_id = 'CN601'"
    ) == {(D("154.70"),)}


def test_inventory_adjustments(clean):
    rows = query(
        clean["db"],
        "select a.external_id, t.rma_number, a.sku, a.location, a.warehouse, a.quantity "
        "from marts.inventory_adjustments a join marts.returns t using (return_key)",
    )
    # move 5099 was created, then deleted (with its tombstone): it is gone
    assert rows == {
        ("5001", "LR-1001", "P10001", "WH-E-STO", "WH-E", D(1)),
        ("5002", "LR-1001", "P10001", "WH-E-SCR", "WH-E", D(1)),
        ("5003", "LR-1001", "P10002", "WH-E-RFB", "WH-E", D(1)),
        ("5004", "LR-1002", "P10005", "WH-W-STO", "WH-W", D(1)),
        ("5005", "D5nk2RrqRRMA", "P10003", "WH-E-RTV", "WH-E", D(1)),
    }


def test_return_events_and_kpis(clean):
    events = query(
        clean["db"],
        "select e.event, count(*) from marts.return_events e "
        "join marts.returns t using (return_key) where t.rma_number = 'LR-1001' group by 1",
    )
    assert events == {
        ("requested", 1),
        ("approved", 1),
        ("received", 2),
        ("inspected", 3),
        ("posted", 3),
        ("credited", 1),
        ("refunded", 1),
    }
    kpis = query(
        clean["db"],
        "select sum(returns_requested), sum(returns_received), sum(units_received), "
        "sum(units_restock), sum(units_refurbish), sum(units_scrap), sum(units_return_to_vendor) "
        "from marts.returns_kpis",
    )
    assert kpis == {(6, 4, D(10), D(2), D(6), D(1), D(1))}


# -- noise, rebuilds, incremental ----------------------------------------------------------------


def test_second_build_is_identical(clean):
    assert clean["second"] == clean["first"]


def test_noise_changes_nothing(clean, noisy):
    # positions differ (duplicates land at other offsets and file rows); nothing else may
    without_positions = snapshot(clean["db"], exclude=("source_position",))
    assert snapshot(noisy["db"], exclude=("source_position",)) == without_positions


def test_incremental_equals_full_refresh(noisy):
    assert noisy["incremental"] == noisy["full"]
