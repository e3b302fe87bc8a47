"""File-source staging is built in place (issue 24): a second increment creates no view and
rewrites only the keys with new raw rows, with the same rows a full refresh gives.

The session's simulated landscape (`simulated_run`) is landed into an empty warehouse in random
thirds of every raw table, as `test_incremental_marts` does (late and out-of-order file rows:
a newer delivery or report row often lands before an older one). Staging is built after the
first and after the second batch. With the second batch also land: a newer version of a Shopify
refund and of a returns SaaS return whose line items are now empty (their old items must go),
and a new version of the SKU crosswalk (the reference tables, a few hundred rows, are rebuilt as
tables on every build: the new version replaces the old).

The proof reads what dbt executed (`target/run`, `run_results.json`) and DuckDB's catalog: the
staging relations are tables and no executed staging statement creates a view. Before the second
build every row of the file-source staging tables is marked (its `source_position` prefixed with
its model's name, in the table itself): afterwards the rows of keys without a new raw row still
carry the mark (not rewritten) and the rows of keys with one do not (recomputed). With the marks
taken off, a `--full-refresh` of a copy gives exactly the same rows, table for table.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import duckdb

from pipelines.lib import warehouse
from tests.dbt.cli import dbt
from tests.dbt.test_incremental_marts import LANDED, differences, land_batch

# file-source staging model -> (its key column, its raw table, the raw key expression)
FILE_MODELS = {
    "stg_amazon__returns": ("amazon_rma_id", "amazon_returns", "trim(amazon_rma_id)"),
    "stg_b2b__credit_requests": ("request_id", "b2b_credit_requests", "trim(request_id)"),
    "stg_shopify__refunds": ("refund_id", "shopify_refunds", "id"),
    "stg_shopify__refund_line_items": ("refund_id", "shopify_refunds", "id"),
    "stg_returns_saas__returns": ("return_id", "returns_saas_webhooks", "return_id"),
    "stg_returns_saas__return_line_items": ("return_id", "returns_saas_webhooks", "return_id"),
}
REFERENCE_MODELS = (
    "stg_reference__sku_crosswalks",
    "stg_reference__warehouse_crosswalks",
    "stg_reference__fx_rates",
)


def build_staging(db: Path, work: Path, *extra: str) -> dict:
    """`dbt run` of the file-source staging models; returns dbt's run_results.json."""
    dbt(db, work, "run", "--select", *FILE_MODELS, *REFERENCE_MODELS, *extra)
    return json.loads((work / "target" / "run_results.json").read_text())


def mark_of(model: str) -> str:
    """The model's own mark: a line item recomputed from its marked parent would carry the
    parent's mark, not its own."""
    return f"{model}|"


def mark(db: Path, undo: bool = False) -> dict[str, int]:
    """Prefix (or un-prefix) `source_position` of every row of the file-source staging tables;
    returns the rows per table (and of the reference tables)."""
    out = {}
    with warehouse.connection(db) as con:
        for model in FILE_MODELS:
            col, mark = "source_position", mark_of(model)
            value = f"substr({col}, {len(mark) + 1})" if undo else f"'{mark}' || {col}"
            where = f"starts_with({col}, '{mark}')" if undo else "true"
            con.execute(f"update staging.{model} set {col} = {value} where {where}")
        for model in (*FILE_MODELS, *REFERENCE_MODELS):
            out[model] = con.execute(f"select count(*) from staging.{model}").fetchone()[0]
    return out


def marks(db: Path, model: str, key: str, keys: set) -> tuple[int, int, int, int]:
    """(untouched rows marked, untouched rows unmarked, touched marked, touched unmarked)."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            f"select {key}, starts_with(source_position, '{mark_of(model)}') from staging.{model}"
        ).fetchall()
    out = [0, 0, 0, 0]
    for k, is_marked in rows:
        out[(2 if k in keys else 0) + (0 if is_marked else 1)] += 1
    return tuple(out)


def land_late_versions(db: Path, stamp) -> tuple[int, int]:
    """A newer version of one refund and one return (both with items staged), their line items
    now empty, and a new SKU crosswalk version without its first row; returns their ids."""
    with warehouse.connection(db) as con:
        refund = con.execute(
            "select refund_id from staging.stg_shopify__refund_line_items order by 1 limit 1"
        ).fetchone()[0]
        con.execute(
            "insert into raw.shopify_refunds select * replace ("
            "  [] as refund_line_items, 'zz-late.ndjson' as _file, ?::timestamptz as _ingested_at)"
            " from raw.shopify_refunds where id = ?"
            " qualify row_number() over (order by _ingested_at desc, _file desc,"
            "  _row_number desc) = 1",
            [stamp, refund],
        )
        ret = con.execute(
            "select return_id from staging.stg_returns_saas__return_line_items order by 1 limit 1"
        ).fetchone()[0]
        con.execute(
            "insert into raw.returns_saas_webhooks select * replace ("
            "  [] as line_items, 'late-' || webhook_id as webhook_id,"
            "  updated_at + interval 1 day as updated_at, 'zz-late.ndjson' as _file,"
            "  ?::timestamptz as _ingested_at)"
            " from raw.returns_saas_webhooks where return_id = ?"
            " qualify row_number() over (order by updated_at desc nulls last) = 1",
            [stamp, ret],
        )
        con.execute(
            "insert into raw.sku_crosswalk select * replace ("
            "  'sku_crosswalk-v2.csv' as _file, md5('v2') as _file_sha256,"
            "  ?::timestamptz as _ingested_at)"
            " from raw.sku_crosswalk where _row_number > 1",
            [stamp],
        )
    return refund, ret


def touched_keys(db: Path, stamp) -> dict[str, set]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            model: {
                r[0]
                for r in con.execute(
                    f"select distinct {expr} from raw.{raw} where _ingested_at >= ?", [stamp]
                ).fetchall()
            }
            for model, (_, raw, expr) in FILE_MODELS.items()
        }


def test_file_staging_increment_rewrites_only_changed_keys(simulated_run, tmp_path):
    source = simulated_run.settings.db_path
    db = tmp_path / "warehouse.duckdb"
    warehouse.initialize(db)
    assert land_batch(db, source, 0) > 0
    build_staging(db, tmp_path)
    before = mark(db)
    assert all(before.values()), before

    stamp = LANDED + timedelta(hours=1)
    assert land_batch(db, source, 1) > 0
    refund, ret = land_late_versions(db, stamp)
    touched = touched_keys(db, stamp)
    results = build_staging(db, tmp_path)

    # what dbt executed: every staging model succeeded, none created a view
    staged = {r["unique_id"].split(".")[-1]: r for r in results["results"]}
    assert set(staged) == {*FILE_MODELS, *REFERENCE_MODELS}
    assert all(r["status"] == "success" for r in staged.values()), staged
    executed = {
        p.stem: p.read_text().lower()
        for p in (tmp_path / "target" / "run" / "returnsync" / "models" / "staging").rglob("*.sql")
    }
    for model in (*FILE_MODELS, *REFERENCE_MODELS):
        assert model in executed, sorted(executed)
        assert "create view" not in executed[model], model
    for model in FILE_MODELS:  # delete+insert: the recomputed keys' old rows go first
        assert f'delete from "warehouse"."staging"."{model}"' in executed[model], model
        assert f'insert into "warehouse"."staging"."{model}"' in executed[model], model
    for model in REFERENCE_MODELS:  # a table: `create table ... as`
        assert re.search(r"\bcreate\s+table\b", executed[model]), model
    with duckdb.connect(str(db), read_only=True) as con:
        tables = {
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'staging'"
            ).fetchall()
        }
    assert set(FILE_MODELS) | set(REFERENCE_MODELS) <= tables

    # untouched keys: still marked, not rewritten; touched keys: recomputed, unmarked
    for model, (key, _, _) in FILE_MODELS.items():
        kept, kept_rewritten, touched_kept, recomputed = marks(db, model, key, touched[model])
        assert kept > 0 and kept_rewritten == 0, (model, kept, kept_rewritten)
        assert touched_kept == 0 and recomputed > 0, (model, touched_kept, recomputed)
    # reference: the SKU crosswalk's new version (one row fewer) replaced the old one
    after = mark(db, undo=True)
    assert {m: after[m] for m in REFERENCE_MODELS} == {
        m: before[m] - (m == "stg_reference__sku_crosswalks") for m in REFERENCE_MODELS
    }

    # the late versions' emptied line items are gone
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(
            "select count(*) from staging.stg_shopify__refund_line_items where refund_id = ?",
            [refund],
        ).fetchone() == (0,)
        assert con.execute(
            "select count(*) from staging.stg_returns_saas__return_line_items where return_id = ?",
            [ret],
        ).fetchone() == (0,)

    # with the marks taken off (above), a full refresh of a copy gives the same rows
    full = tmp_path / "full.duckdb"
    shutil.copy(db, full)
    build_staging(full, tmp_path, "--full-refresh")
    tables = tuple(f"staging.{model}" for model in (*FILE_MODELS, *REFERENCE_MODELS))
    for table, (_, only_here, only_there) in differences(db, full, tables).items():
        assert (only_here, only_there) == (0, 0), table
