"""The incremental intermediate and mart models equal a full refresh, row for row (issue #7).

The simulated landscape's raw rows (the session's `simulated_run`) are landed again into an empty
warehouse in three batches, each a random third of every raw table (so a CDC row's newer version
often lands before its older one, webhook deliveries and report rows arrive late, and documents
land before the returns they belong to), and dbt builds after each batch, incrementally. After the
second and third batch a copy of the warehouse is built with `--full-refresh`: every mart, the
reconciliation's mismatch table and the incremental staging tables (file sources and WMS: the
latest version of each key and the dedup, whatever order the rows landed in) must hold exactly
the same rows, and the incremental build must really have been scoped (no `full` row in
`int_returns_touched`, whose change scope comes from the staging rows recomputed since the last
build, nor in `recon_touched`), also after a build that found nothing new. A reference file put
back, which lands no raw row, recomputes everything.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from pipelines.lib import warehouse
from pipelines.lib.contracts import CDC_TABLES
from tests.dbt.cli import dbt

MARTS = (
    "returns",
    "return_lines",
    "receipts",
    "dispositions",
    "credits",
    "inventory_adjustments",
    "return_events",
    "return_stage_latencies",
    "returns_kpis",
)
COMPARED = (
    *(f"marts.{m}" for m in MARTS),
    "recon.recon_mismatches_current",
    "recon.recon_return_money",
    "recon.recon_line_money",
)
STAGING = tuple(
    f"staging.{m}"
    for m in (
        "stg_amazon__returns",
        "stg_b2b__credit_requests",
        "stg_shopify__refunds",
        "stg_shopify__refund_line_items",
        "stg_returns_saas__returns",
        "stg_returns_saas__return_line_items",
        "stg_reference__sku_crosswalks",
        "stg_reference__warehouse_crosswalks",
        "stg_reference__fx_rates",
        "stg_wms__receipts",
        "stg_wms__inspections",
        # the channel models (incremental on the touched returns' RMAs) and the ERP dimensions
        "stg_returns_saas__channel_returns",
        "stg_returns_saas__channel_return_lines",
        "stg_amazon__channel_returns",
        "stg_amazon__channel_return_lines",
        "stg_b2b__channel_returns",
        "stg_b2b__channel_return_lines",
        "stg_erp__products",
        "stg_erp__currencies",
        "stg_erp__parties",
        "stg_erp__stock_locations",
        "stg_erp__return_shipments",
    )
)
FILE_TABLES = ("returns_saas_webhooks", "shopify_refunds", "amazon_returns", "b2b_credit_requests")
# reference files land with the first batch: a crosswalk change recomputes everything by design
FIRST_BATCH_ONLY = ("sku_crosswalk", "warehouse_crosswalk", "fx_rates")
BATCHES = 3
LANDED = datetime(2026, 11, 2, tzinfo=UTC)


def build(db: Path, work: Path, as_of: str, *extra: str) -> None:
    """`dbt build` of seeds and models (recon included), no tests."""
    dbt(
        db,
        work,
        "build",
        "--resource-type",
        "seed",
        "--resource-type",
        "model",
        "--vars",
        json.dumps({"as_of": as_of}),
        *extra,
    )


def land_batch(db: Path, source: Path, batch: int) -> int:
    """Copy one random third of every raw table of `source` into `db`, stamped as landed now."""
    position = {t.raw_table: "_topic, _partition, _offset" for t in CDC_TABLES}
    position.update({t: "_file_sha256, _row_number" for t in FILE_TABLES + FIRST_BATCH_ONLY})
    stamp = LANDED + timedelta(hours=batch)
    landed = 0
    with warehouse.connection(db) as con:
        con.execute(f"attach '{source}' as src (read_only)")
        for table, cols in position.items():
            if table in FIRST_BATCH_ONLY:
                where = "true" if batch == 0 else "false"
            else:
                where = f"hash({cols}, 'incremental-test') % {BATCHES} = {batch}"
            landed += con.execute(
                f"insert into raw.{table} select * replace (?::timestamptz as _ingested_at) "
                f"from src.raw.{table} where {where}",
                [stamp],
            ).fetchone()[0]
        con.execute("detach src")
    return landed


def differences(
    db: Path, other: Path, tables: tuple[str, ...] = COMPARED
) -> dict[str, tuple[int, int, int]]:
    """Per compared table: (rows, rows only in db, rows only in other), as multisets."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(f"attach '{other}' as other (read_only)")
        for table in tables:
            rows = con.execute(f"select count(*) from {table}").fetchone()[0]
            only_here = con.execute(
                f"select count(*) from (from {table} except all from other.{table})"
            ).fetchone()[0]
            only_there = con.execute(
                f"select count(*) from (from other.{table} except all from {table})"
            ).fetchone()[0]
            out[table] = (rows, only_here, only_there)
    return out


def scope(db: Path, table: str = "intermediate.int_returns_touched") -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(f"select kind, count(*) from {table} group by 1").fetchall()
    return dict(rows)


def test_incremental_builds_equal_full_refresh(simulated_run, tmp_path):
    source = simulated_run.settings.db_path
    db = tmp_path / "incremental.duckdb"
    warehouse.initialize(db)
    for batch in range(BATCHES):
        assert land_batch(db, source, batch) > 0
        build(db, tmp_path, simulated_run.as_of)
        if batch == 0:
            assert "full" in scope(db)  # the first build computes everything
            continue
        touched = scope(db)
        assert "full" not in touched and touched.get("return", 0) > 0, touched
        assert "full" not in scope(db, "recon.recon_touched")
        if batch == 1:
            # a build with nothing new (a scheduled run, a watch's catch-up) touches nothing, and
            # the next increment is still scoped: the models' recorded watermarks and
            # fingerprints survive an empty scope (they were once recorded as null, and every
            # increment after an idle build recomputed everything as if a seed had changed)
            build(db, tmp_path, simulated_run.as_of)
            # nor is any return due: as_of has not moved since the rule models' last builds
            assert scope(db) == {} and scope(db, "recon.recon_touched") == {}
        full = tmp_path / f"full-{batch}.duckdb"
        shutil.copy(db, full)
        build(full, tmp_path, simulated_run.as_of, "--full-refresh")
        diff = differences(db, full, COMPARED + STAGING)
        assert all(only_here == only_there == 0 for _, only_here, only_there in diff.values()), diff
        assert diff["marts.returns"][0] > 100 and diff["recon.recon_mismatches_current"][0] > 0
        assert all(diff[t][0] > 0 for t in STAGING if not t.endswith("fx_rates")), diff

    # a reference file put back (an earlier content made current again, DESIGN §12) lands no raw
    # row, only its new version in meta.reference_versions: everything is recomputed
    with warehouse.connection(db) as con:
        con.execute(
            "insert into meta.reference_versions (raw_table, version, sha256, arrived_at, path) "
            "select 'sku_crosswalk', 99, min(_file_sha256), ?, 'reference/sku_crosswalk.csv' "
            "from raw.sku_crosswalk",
            [LANDED + timedelta(hours=BATCHES)],
        )
    build(db, tmp_path, simulated_run.as_of)
    assert "full" in scope(db)
