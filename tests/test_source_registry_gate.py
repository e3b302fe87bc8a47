"""The gate of the source registry (issue 20): a new file source is its registry entry and its
staging folder (plus a parser only for a new format).

A temporary copy of the project gets a toy CSV source that carries a sales channel's returns
through exactly those: one `FileSource` (with `channel`) appended to the copy's
`pipelines/lib/contracts.py` and a staging folder with its model and its two channel models (its
requests in the shape of the channel unions). Then `python -m pipelines.lib.contracts` (make
sources-yml) regenerates the copy's generated dbt files, and the copy's own code must: create its
raw table, land its files (a missing required field dead-lettered), run its landing-boundary
suite (a value outside its set and a zero quantity fail), show it as a Dagster asset with its
checks and its staging model downstream, build its models with dbt, and show its requests in
both channel unions. Nothing else of the copy is edited.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# what a copy leaves out: environments, data, build output, caches, history
SKIPPED = {".git", "data", ".cache", ".dagster_home", "__pycache__", ".pytest_cache",
           ".ruff_cache", ".hypothesis", "returnsync.egg-info"}  # fmt: skip


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIPPED or n.startswith(".venv")}
    if Path(folder).name == "dbt_project":
        skipped |= {"target", "logs"} & set(names)
    return skipped


TOY_TABLE = "portal_requests"
TOY_ENTRY = """    FileSource(  # toy source of tests/test_source_registry_gate.py
        "portal", "portal_requests", "portal/requests_*.csv",
        {"request_id": "varchar", "sku": "varchar", "quantity": "integer", "status": "varchar"},
        ("request_id", "sku", "quantity"),
        value_sets={"status": ("open", "done")},
        positive=("quantity",),
        channel="portal",
    ),
"""
TOY_MODEL = """select
    request_id,
    sku,
    quantity,
    status,
    _file as source_file,
    _row_number as source_row_number
from {{ source('raw', 'portal_requests') }}
"""
# its requests in the channel unions' shape (CHANNEL_UNIONS; the generated contract checks it)
TOY_CHANNEL_RETURNS = """select
    'portal' as channel,
    'portal' as source_system,
    request_id as channel_return_id,
    request_id as rma_number,
    {{ normalize_rma('request_id') }} as rma_normalized,
    status as channel_status,
    case status when 'done' then 'closed' else 'requested' end as base_status,
    cast(null as timestamptz) as requested_at,
    cast(null as timestamptz) as approved_at,
    cast(null as timestamptz) as closed_at,
    cast(null as varchar) as currency,
    'refund' as outcome,
    cast(null as varchar) as tracking_number,
    cast(null as varchar) as tracking_normalized,
    cast(null as varchar) as order_ref,
    cast(null as bigint) as shopify_order_id,
    source_file || ':' || source_row_number as source_position,
    cast(null as timestamptz) as source_changed_at
from {{ ref('stg_portal__requests') }}
"""
TOY_CHANNEL_RETURN_LINES = """select
    'portal' as channel,
    'portal' as source_system,
    {{ normalize_rma('request_id') }} as rma_normalized,
    sku as channel_sku,
    cast(null as varchar) as channel_line_id,
    cast(quantity as decimal(12, 3)) as qty_requested,
    cast(null as decimal(18, 4)) as unit_price,
    cast(null as varchar) as currency,
    cast(null as varchar) as reason_raw,
    cast(null as varchar) as mapped_reason,
    cast(null as decimal(18, 4)) as refund_amount,
    request_id as source_record_id,
    source_file || ':' || source_row_number as source_position,
    cast(null as timestamptz) as source_changed_at
from {{ ref('stg_portal__requests') }}
"""
TOY_CSV = (
    "request_id,sku,quantity,status\n"
    "P-1,SKU-1,2,open\n"
    "P-2,SKU-2,0,open\n"  # zero quantity: the suite's positive check fails
    "P-3,SKU-3,1,lost\n"  # outside the value set
    ",SKU-4,1,done\n"  # no request_id: a dead letter
)
# run in the copy: land the toy files and validate them, print what happened
LAND = """
import json, sys
from expectations import validate_batch
from expectations.suites import SUITES
from pipelines.lib.contracts import all_raw_tables
from pipelines.lib.files.landing import land_files
from pipelines.lib.warehouse import connect, initialize

db, landing = sys.argv[1], sys.argv[2]
initialize(db)
con = connect(db)
summary = land_files(con, landing)["portal_requests"]
outcome = validate_batch(con, "portal_requests", summary.landed_sha256)
rows = con.execute("select request_id from raw.portal_requests order by 1").fetchall()
dead = con.execute(
    "select count(*) from meta.dead_letters where source = 'portal'"
).fetchone()[0]
con.close()
print(json.dumps({
    "raw_table": "portal_requests" in all_raw_tables(),
    "suite": "portal_requests" in SUITES,
    "rows": [r[0] for r in rows],
    "dead": dead,
    "failed": sorted(f"{r.expectation}:{r.column}" for r in outcome.failed),
}))
"""
DAGSTER = """
from pipelines.dbt import prepare_manifest
prepare_manifest()  # the copy's dbt manifest (dbt parse), which the dbt assets read
from pipelines.definitions import defs
graph = defs.resolve_asset_graph()
key = [k for k in graph.get_all_asset_keys() if k.path == ["raw", "portal_requests"]]
print("asset", bool(key))
for k in graph.get_all_asset_keys():
    if graph.get(k).parent_keys & set(key):
        print("child", k.to_user_string())
for c in graph.asset_check_keys:
    if c.asset_key in key:
        print("check", c.name)
"""


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    work = tmp_path_factory.mktemp("source_gate")
    project = work / "project"
    shutil.copytree(PROJECT_ROOT, project, ignore=_ignore)
    contracts = project / "pipelines" / "lib" / "contracts.py"
    text = contracts.read_text()
    end = "\n)\n\n# fmt: on\n\nFILE_SOURCE_BY_TABLE"
    assert text.count(end) == 1, "the registry's closing line moved: update this test"
    contracts.write_text(text.replace(end, "\n" + TOY_ENTRY.rstrip("\n") + end))
    staging = project / "dbt_project" / "models" / "staging" / "portal"
    staging.mkdir()
    (staging / "stg_portal__requests.sql").write_text(TOY_MODEL)
    (staging / "stg_portal__channel_returns.sql").write_text(TOY_CHANNEL_RETURNS)
    (staging / "stg_portal__channel_return_lines.sql").write_text(TOY_CHANNEL_RETURN_LINES)

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RETURNSYNC_", "DAGSTER_", "DBT_", "PYTHONPATH"))
    }
    env.update(
        PYTHONPATH=str(project),
        RETURNSYNC_DATA_DIR=str(work / "data"),
        RETURNSYNC_DB=str(work / "data" / "w.duckdb"),
        RETURNSYNC_LANDING=str(work / "landing"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
    )

    def run(*args: str, cwd: Path = project) -> subprocess.CompletedProcess:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    where = run(str(BIN / "python"), "-c", "import pipelines; print(pipelines.__file__)")
    assert where.stdout.strip() == str(project / "pipelines" / "__init__.py")
    run(str(BIN / "python"), "-m", "pipelines.lib.contracts")  # make sources-yml
    (work / "data").mkdir()
    (work / "landing" / "portal").mkdir(parents=True)
    (work / "landing" / "portal" / "requests_2026-11-01.csv").write_text(TOY_CSV)
    return project, work, run


def test_the_toy_source_is_in_dbts_sources(copy):
    project, _, _ = copy
    text = (project / "dbt_project" / "models" / "staging" / "_sources.yml").read_text()
    assert f"      - name: {TOY_TABLE}\n" in text
    assert "source: portal\n            format: csv\n            channel: portal\n" in text
    macro = (project / "dbt_project" / "macros" / "generated" / "channel_models.sql").read_text()
    for union in ("returns", "return_lines"):
        assert f"'stg_portal__channel_{union}'," in macro


def test_the_toy_source_lands_and_is_validated_by_its_generated_suite(copy):
    _, work, run = copy
    out = run(
        str(BIN / "python"), "-c", LAND, str(work / "data" / "w.duckdb"), str(work / "landing")
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["raw_table"] and got["suite"]
    assert got["rows"] == ["P-1", "P-2", "P-3"]
    assert got["dead"] == 1
    assert got["failed"] == [
        "expect_column_values_to_be_between:quantity",
        "expect_column_values_to_be_in_set:status",
    ]


def test_the_toy_source_is_a_dagster_asset_and_its_requests_reach_the_channel_unions(copy):
    project, work, run = copy
    listed = run(str(BIN / "python"), "-c", DAGSTER).stdout.splitlines()
    assert "asset True" in listed
    assert any(line.startswith("check ") for line in listed), listed  # its landing checks
    assert any(line.endswith("stg_portal__requests") for line in listed), listed
    # the raw table was landed by the previous test (module order)
    db = work / "data" / "w.duckdb"
    if not db.exists():  # run alone: land first
        run(str(BIN / "python"), "-c", LAND, str(db), str(work / "landing"))
    # its staging model, and the channel unions with everything they read (tests left out)
    run(
        str(BIN / "dbt"), "build", "--select", "stg_portal__requests",
        "+int_channel_returns_unioned", "+int_channel_return_lines_unioned",
        "--exclude-resource-type", "test", "unit_test",
        "--profiles-dir", ".", "--target-path", str(work / "target"),
        "--log-path", str(work / "logs"),
        cwd=project / "dbt_project",
    )  # fmt: skip
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        (schema,) = con.execute(
            "select table_schema from information_schema.tables "
            "where table_name = 'stg_portal__requests'"
        ).fetchone()
        rows = con.execute(f"select request_id from {schema}.stg_portal__requests").fetchall()
        returns = con.execute(
            "select channel_return_id, rma_normalized, base_status "
            "from intermediate.int_channel_returns_unioned where channel = 'portal' order by 1"
        ).fetchall()
        lines = con.execute(
            "select rma_normalized, channel_sku, qty_requested "
            "from intermediate.int_channel_return_lines_unioned where channel = 'portal' order by 1"
        ).fetchall()
    assert sorted(r[0] for r in rows) == ["P-1", "P-2", "P-3"]
    # through its registry entry and staging folder only: the unions name no source
    assert returns == [("P-1", "P1", "requested"), ("P-2", "P2", "requested"),
                       ("P-3", "P3", "requested")]  # fmt: skip
    assert [(r, s, int(q)) for r, s, q in lines] == [("P1", "SKU-1", 2), ("P2", "SKU-2", 0),
                                                     ("P3", "SKU-3", 1)]  # fmt: skip
