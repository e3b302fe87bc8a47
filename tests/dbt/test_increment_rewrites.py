"""An increment creates no view and rewrites only the rows of what changed (issue 24).

The session's simulated landscape (`simulated_run`) is landed into an empty warehouse in random
thirds, as `test_incremental_marts` does: the first third is built in full, then every row of the
models below is marked in its table (a non-null column prefixed with a mark), the second third
lands and the whole project is built again. The proof reads what dbt executed (`target/run`,
`run_results.json`): no statement of the second build creates a view, and each model below was
inserted into, not created again. Then the marks: the rows outside the change scope still carry
theirs (not rewritten) and the rows inside it do not (recomputed). The scope is the touched
returns (`intermediate.int_returns_touched`) for the channel models and the stage latencies, the
keys with a raw change landed since the last build for the ERP dimensions.

`incremental == full refresh` for these tables is `test_incremental_marts`'s; here, last, only
time passes (a later as_of, nothing landed): the stage latencies' as_of-dependent columns are
refreshed on the rows kept, and the table equals a full refresh of it at that as_of.
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
from tests.dbt.test_incremental_marts import LANDED, build, differences, land_batch

MARK = "rewritten?|"
# macros/cdc_current_state.sql normalize_rma
NORMALIZED_RMA = "upper(regexp_replace(rma_number, '[^A-Za-z0-9]', '', 'g'))"
# model -> (schema, key (an expression), marked column, scope: rma | return | raw table of the key)
MODELS = {
    "stg_returns_saas__channel_returns": ("staging", "rma_normalized", "channel", "rma"),
    "stg_returns_saas__channel_return_lines": ("staging", "rma_normalized", "channel", "rma"),
    "stg_amazon__channel_returns": ("staging", "rma_normalized", "channel", "rma"),
    "stg_amazon__channel_return_lines": ("staging", "rma_normalized", "channel", "rma"),
    "stg_b2b__channel_returns": ("staging", "rma_normalized", "channel", "rma"),
    "stg_b2b__channel_return_lines": ("staging", "rma_normalized", "channel", "rma"),
    "stg_erp__products": ("staging", "product_id", "source_position", "erp_product_product"),
    "stg_erp__currencies": ("staging", "currency_id", "source_position", "erp_currency_currency"),
    "stg_erp__parties": ("staging", "party_id", "source_position", "erp_party_party"),
    "stg_erp__stock_locations": ("staging", "location_id", "source_position", "erp_stock_location"),
    "stg_erp__return_shipments": (
        "staging", "shipment_id", "source_position", "erp_stock_shipment_out_return"
    ),
    "return_stage_latencies": ("marts", "return_key", "stage_latency_key", "return"),
    # keyed by RMA number: normalized, as the return's rma_normalized
    "recon_return_money": ("recon", NORMALIZED_RMA, "side", "rma"),
    "recon_line_money": ("recon", NORMALIZED_RMA, "sku", "rma"),
}  # fmt: skip
# the models with keys on both sides of the scope in this landscape's second third (a handful of
# currencies and locations: every key may change)
BOTH_SIDES = (
    "stg_returns_saas__channel_returns",
    "stg_returns_saas__channel_return_lines",
    "stg_amazon__channel_returns",
    "stg_amazon__channel_return_lines",
    "stg_erp__products",
    "stg_erp__parties",
    "return_stage_latencies",
    "recon_return_money",
    "recon_line_money",
)
LATER = "2027-01-15T00:00:00Z"


def mark(db: Path, undo: bool = False) -> dict[str, int]:
    """Prefix (or un-prefix) the marked column of every row; returns the rows per model."""
    out = {}
    with warehouse.connection(db) as con:
        for model, (schema, _, col, _) in MODELS.items():
            value = f"substr({col}, {len(MARK) + 1})" if undo else f"'{MARK}' || {col}"
            where = f"starts_with({col}, '{MARK}')" if undo else "true"
            con.execute(f"update {schema}.{model} set {col} = {value} where {where}")
            out[model] = con.execute(f"select count(*) from {schema}.{model}").fetchone()[0]
    return out


def scope_keys(con, scope: str, stamp) -> set:
    if scope == "rma":
        q = "select rma_normalized from intermediate.int_returns_touched where kind = 'return'"
        return {r[0] for r in con.execute(q).fetchall()}
    if scope == "return":
        q = "select key from intermediate.int_returns_touched where kind = 'return'"
        return {r[0] for r in con.execute(q).fetchall()}
    q = f"select distinct id from raw.{scope} where _ingested_at >= ?"
    return {r[0] for r in con.execute(q, [stamp]).fetchall()}


def marks(db: Path, stamp) -> dict[str, tuple[int, int, int, int]]:
    """Per model: (kept marked, kept unmarked, in scope marked, in scope unmarked)."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for model, (schema, key, col, scope) in MODELS.items():
            keys = scope_keys(con, scope, stamp)
            counts = [0, 0, 0, 0]
            rows = con.execute(
                f"select {key}, starts_with({col}, '{MARK}') from {schema}.{model}"
            ).fetchall()
            for k, is_marked in rows:
                counts[(2 if k in keys else 0) + (0 if is_marked else 1)] += 1
            out[model] = tuple(counts)
    return out


def test_increment_creates_no_view_and_rewrites_only_the_scope(simulated_run, tmp_path):
    source = simulated_run.settings.db_path
    as_of = simulated_run.as_of
    db = tmp_path / "warehouse.duckdb"
    warehouse.initialize(db)
    assert land_batch(db, source, 0) > 0
    build(db, tmp_path, as_of)
    before = mark(db)
    assert all(before.values()), before

    stamp = LANDED + timedelta(hours=1)
    assert land_batch(db, source, 1) > 0
    shutil.rmtree(tmp_path / "target" / "run", ignore_errors=True)
    build(db, tmp_path, as_of)
    with duckdb.connect(str(db), read_only=True) as con:
        kinds = dict(
            con.execute(
                "select kind, count(*) from intermediate.int_returns_touched group by 1"
            ).fetchall()
        )
    assert "full" not in kinds and kinds.get("return", 0) > 0, kinds

    # what dbt executed: every node succeeded, no statement created a view, the models above
    # were inserted into (incremental), not created again
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    assert results and all(r["status"] == "success" for r in results), [
        (r["unique_id"], r["status"]) for r in results if r["status"] != "success"
    ]
    executed = {p.stem: p.read_text().lower() for p in (tmp_path / "target" / "run").rglob("*.sql")}
    assert len(executed) >= len(MODELS)
    view = re.compile(r"\bcreate\s+(or\s+replace\s+)?view\b")
    views = [name for name, sql in executed.items() if view.search(sql)]
    assert views == [], views
    for model, (schema, *_) in MODELS.items():
        relation = f'"warehouse"."{schema}"."{model}"'
        assert f"insert into {relation}" in executed[model], model
        assert not re.search(rf"create\s+table\s+{re.escape(relation)}", executed[model]), model

    # kept rows still marked (not rewritten), rows in the scope recomputed (unmarked)
    found = marks(db, stamp)
    for model, (kept, kept_rewritten, scope_marked, recomputed) in found.items():
        assert kept_rewritten == 0 and scope_marked == 0, (model, found[model])
        if model in BOTH_SIDES:
            assert kept > 0 and recomputed > 0, (model, found[model])

    # only time passes: a later as_of, nothing new; the stage latencies' as_of, open ages and
    # overdue flags move on the rows kept, as a full refresh of the table computes them
    mark(db, undo=True)
    later = ("--select", "return_stage_latencies")
    dbt(db, tmp_path, "build", "--resource-type", "model", "--vars",
        json.dumps({"as_of": LATER}), *later)  # fmt: skip
    full = tmp_path / "full.duckdb"
    shutil.copy(db, full)
    dbt(full, tmp_path, "build", "--resource-type", "model", "--vars",
        json.dumps({"as_of": LATER}), "--full-refresh", *later)  # fmt: skip
    table = "marts.return_stage_latencies"
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(f"attach '{full}' as other (read_only)")
        rows, open_rows, as_ofs = con.execute(
            f"select count(*), count(open_age_h), count(distinct as_of) from {table}"
        ).fetchone()
    assert rows > 0 and open_rows > 0 and as_ofs == 1, (rows, open_rows, as_ofs)
    assert differences(db, full, (table,))[table][1:] == (0, 0)
