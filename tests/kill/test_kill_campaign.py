"""The kill -9 campaign (issue 19, Proof; DESIGN §12 Concurrency).

A real `returnsync run` on a small simulated landscape (40 returns) is SIGKILLed at landing, at
dbt and at publish, and a real `returnsync push` against a real Tryton server at write-back. Each
kill's stage is proven by the stage markers the killed process wrote (`pipelines.lib.stages`),
plus a fact that shows the stage had not finished (at dbt: a model already executed, the build
running in the run's own process); a kill that missed its stage is retried on a fresh
warehouse, never counted. After each kill: no process of that run is left and the warehouse
opens for writing; then a clean rerun, and
every table of the raw, meta, marts, recon and writeback schemas must equal the uninterrupted
run's, compared sorted, without the wall-clock columns `harness.EXCLUDED` lists.
One uninterrupted baseline run serves every comparison.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from pipelines.lib.contracts import FILE_SOURCES
from tests.fixtures.tryton_server import (
    PROJECT_ROOT,
    create_sale,
    return_sale,
    sale_lines,
    start_tryton,
)
from tests.kill.harness import (
    AS_OF,
    EXCLUDED,
    EXCLUDED_TABLES,
    RETURNSYNC,
    Command,
    Snapshot,
    base_env,
    building,
    differences,
    fresh_landing,
    holds,
    opens_for_writing,
    processes_of,
    run_args,
    snapshot,
    wait_gone,
    wait_until,
)

pytestmark = pytest.mark.slow

LANDING_STEPS = len(FILE_SOURCES) + 1  # one asset per file source, one for the CDC streams
ATTEMPTS = 3  # tries per kill point before a case fails for never hitting its stage
RUN_TIMEOUT_S = 240


@dataclass
class Baseline:
    root: Path
    pristine: Path  # the simulated landscape, never landed from
    landing: Path  # where every run of this module lands from (the ledger stores the path)
    db: Path
    tables: Snapshot
    stages: list[str]
    pid: int


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    root = tmp_path_factory.mktemp("kill")
    pristine = root / "landscape"
    subprocess.run(
        [*RETURNSYNC, "simulate", "--returns", "40", "--seed", "5", "--out", str(pristine),
         "--as-of", AS_OF],
        cwd=PROJECT_ROOT, env=base_env(root / "unused"), check=True, capture_output=True,
    )  # fmt: skip
    landing = fresh_landing(pristine, root / "landing")
    data = root / "baseline"
    run = Command(run_args(landing), base_env(data), root).start()
    try:
        assert run.wait(RUN_TIMEOUT_S) == 0, run.output()
        assert wait_gone(run.token) == []
    finally:
        run.finish()
    db = data / "returnsync.duckdb"
    return Baseline(root, pristine, landing, db, snapshot(db), run.stages(), run.process.pid)


def test_the_uninterrupted_run_marks_every_stage_and_leaves_no_dbt_target(baseline):
    stages = baseline.stages
    assert stages.count("landing") == LANDING_STEPS
    assert "dbt" in stages and "publish" in stages and "planning" in stages
    assert stages.index("dbt") > max(i for i, s in enumerate(stages) if s == "landing")
    assert stages.index("recon") > stages.index("dbt")
    assert stages.index("publish") > stages.index("recon")
    # its per-run dbt target folder was removed when the build succeeded
    from pipelines.dbt import targets_dir

    assert not list(targets_dir().glob(f"returnsync_dbt_assets-*-pid{baseline.pid}"))
    assert (targets_dir() / "manifest.json").exists()


def test_every_excluded_column_exists_and_is_a_timestamp(baseline):
    """The exclusion list names real columns (no stale entry hides nothing, or something else)."""
    con = duckdb.connect(str(baseline.db), read_only=True)
    try:
        columns = {
            (s, t, c): d
            for s, t, c, d in con.execute(
                "select table_schema, table_name, column_name, data_type "
                "from information_schema.columns"
            ).fetchall()
        }
    finally:
        con.close()
    tables = {(s, t) for s, t, _ in columns}
    for entry in EXCLUDED:
        schema, table, column = entry.split(".")
        matches = [
            d
            for (s, t, c), d in columns.items()
            if s == schema and c == column and table in ("*", t)
        ]
        if table != "*" and (schema, table) not in tables:
            continue  # a table of a migration this warehouse does not have yet
        assert matches, f"{entry} names no column"
        if column not in ("inode", "run_id"):
            assert all(d.startswith("TIMESTAMP") for d in matches), (entry, matches)
    for entry in EXCLUDED_TABLES:
        assert tuple(entry.split(".")) in tables, f"{entry} names no table"


# -- kills during `returnsync run` -----------------------------------------------------------


def _kill_when_landing(run: Command, db: Path) -> bool:
    return run.stages().count("landing") >= 3  # a few sources landed, the others not yet


def _proven_landing(stages: list[str], data: Path) -> bool:
    return (
        bool(stages)
        and stages[-1] == "landing"
        and stages.count("landing") < LANDING_STEPS  # sources still to land
    )


def _kill_when_dbt(run: Command, db: Path) -> bool:
    if "dbt" not in run.stages():
        return False
    # `returnsync run` builds in its own process (pipelines.dbt.in_process): the kill lands
    # while that process holds the warehouse in the middle of the build
    return any(holds(p, db) and building(p) for p in processes_of(run.token))


def _proven_dbt(stages: list[str], data: Path) -> bool:
    return bool(stages) and stages[-1] == "dbt"


def _kill_when_publish(run: Command, db: Path) -> bool:
    return "publish" in run.stages()


def _proven_publish(stages: list[str], data: Path) -> bool:
    # killed inside publish: the analyst copy was never put in place
    return bool(stages) and stages[-1] == "publish" and not (data / "analyst.duckdb").exists()


KILL_POINTS = {
    "landing": (_kill_when_landing, _proven_landing, 0.001),
    "dbt": (_kill_when_dbt, _proven_dbt, 0.02),
    "publish": (_kill_when_publish, _proven_publish, 0.001),
}


@pytest.mark.parametrize("stage", list(KILL_POINTS))
def test_sigkill_then_rerun_equals_the_uninterrupted_run(baseline, stage):
    when, proven, interval = KILL_POINTS[stage]
    tries = []
    for attempt in range(ATTEMPTS):
        fresh_landing(baseline.pristine, baseline.landing)
        data = baseline.root / f"{stage}-{attempt}"
        db = data / "returnsync.duckdb"
        run = Command(run_args(baseline.landing), base_env(data), baseline.root).start()
        try:
            hit = wait_until(
                lambda run=run, db=db: run.process.poll() is not None or when(run, db),
                RUN_TIMEOUT_S,
                interval,
            )
            assert run.process.poll() is None, f"the run ended before the kill: {run.output()}"
            assert hit, f"never reached {stage}: {run.stages()}"
            builders = [p.pid for p in processes_of(run.token) if building(p)]
            run.kill()
            stages = run.stages()
            # after a SIGKILL, nothing of the run is left
            left = wait_gone(run.token)
            assert left == [], f"left behind after SIGKILL at {stages[-1:]}: {left}"
        finally:
            run.finish()
        tries.append(stages[-3:])
        if proven(stages, data):
            break
    else:
        pytest.fail(f"no kill landed in {stage} in {ATTEMPTS} tries (last stages: {tries})")

    if stage == "dbt":
        assert builders, "the kill did not find dbt building"
        assert opens_for_writing(db)  # nothing of the killed run holds the warehouse lock

    rerun = Command(run_args(baseline.landing), base_env(data), baseline.root).start()
    try:
        assert rerun.wait(RUN_TIMEOUT_S) == 0, rerun.output()
        assert wait_gone(rerun.token) == []
    finally:
        rerun.finish()
    assert "planning" in rerun.stages()
    assert differences(baseline.tables, snapshot(db)) == []
    if stage == "publish":  # the interrupted publish's temporary files are gone
        assert sorted(p.name for p in data.iterdir() if ".tmp" in p.name) == []


# -- a kill during `returnsync push` -----------------------------------------------------------

PRODUCTS = ("P-1001", "P-1002", "P-1003", "P-1004")
KILL_RMA = "RMA-KILL-1"
CREATED_LINE = re.compile(r"^adj-\w+ \w+: created ", re.MULTILINE)


def _erp_env(server) -> dict[str, str]:
    return {
        "RETURNSYNC_ERP_URL": server.url,
        "RETURNSYNC_ERP_DATABASE": server.database,
        "RETURNSYNC_ERP_USER": server.user,
        "RETURNSYNC_ERP_PASSWORD": server.password,
    }


def _client(server):
    from pipelines.lib.erp import TrytonAdapter

    return TrytonAdapter.connect(server.url, server.database, server.user, server.password).client


def _erp_return(server) -> tuple[int, int, dict[str, int]]:
    """A confirmed sale of 20 x each product and its confirmed return: the return order, its
    party and the return line id per SKU."""
    client = _client(server)
    sale_id = create_sale(client, "#KILL-1", [(p, 20, Decimal("10.00")) for p in PRODUCTS])
    return_id = return_sale(client, sale_id, rma=KILL_RMA)
    codes = {
        r["id"]: r["code"]
        for r in client.call("product.product", "search_read", [], 0, None, None, ["code"])
    }
    (sale,) = client.call("sale.sale", "read", [return_id], ["party"])
    lines = {codes[line["product"]]: line["id"] for line in sale_lines(client, return_id)}
    return return_id, sale["party"], lines


def _add_postings(db: Path, erp_return: tuple[int, int, dict[str, int]]) -> None:
    """Four receipts the ERP never posted, on the ERP return above, planned as adjustments:
    stock postings Tryton accepts (the simulated landscape's own are refused: its products and
    parties are not in Tryton), beside the landscape's. The return and its lines go into the
    marts and the ERP sale into staging, where `add_mismatch` reads them for the planner's
    candidates."""
    from pipelines.lib.warehouse import connection
    from pipelines.lib.writeback import plan_adjustments
    from tests.writeback.helpers import add_mismatch

    return_id, party_id, lines = erp_return
    with connection(db) as con:
        con.execute(
            "insert into marts.returns (return_key, rma_number, erp_return_order_id, currency) "
            "values ('kill-return', ?, ?, 'EUR')",
            [KILL_RMA, return_id],
        )
        con.execute(
            "insert into staging.stg_erp__sales (sale_id, party_id, is_deleted) "
            "values (?, ?, false)",
            [return_id, party_id],
        )
        for sku, line_id in sorted(lines.items()):
            con.execute(
                "insert into marts.return_lines (return_line_key, return_key, rma_number, "
                "erp_return_line_id, sku, qty_authorized, unit_price, currency) "
                "values (?, ?, ?, ?, ?, 20, 10.00, 'EUR')",
                [f"kill-{sku}", "kill-return", KILL_RMA, line_id, sku],
            )
            add_mismatch(con, "receipt_not_posted", KILL_RMA, sku, location="WH-E-STO",
                         qty_delta="-1")  # fmt: skip
        plan_adjustments(con)


def _documents(server, keys: list[str]) -> dict[str, int]:
    """ERP documents per idempotency key: the return shipments (and internal moves) carrying it."""
    client = _client(server)
    models = ("stock.shipment.out.return", "stock.shipment.internal")
    return {
        key: sum(
            len(client.call(model, "search", [("reference", "=", key)], 0, None, None))
            for model in models
        )
        for key in keys
    }


def _rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _push(db: Path, server, work: Path) -> Command:
    return Command(
        ("push", "--backoff", "0"), base_env(work, RETURNSYNC_DB=str(db), **_erp_env(server)), work
    )


@pytest.mark.erp
def test_sigkill_during_push_then_push_again_equals_the_uninterrupted_push(baseline):
    """Two fresh copies of the prepared Tryton database, one after the other: the uninterrupted
    push on the first, the killed push and its rerun on the second. Same ERP history, so the same
    document ids and numbers: the writeback tables compare whole (the session's shared server
    carries other tests' documents, and a second push there would only find the first's)."""
    work = baseline.root / "writeback"
    erp_dir = work / "tryton"
    work.mkdir()
    w0 = work / "planned.duckdb"
    shutil.copyfile(baseline.db, w0)

    server = start_tryton(erp_dir, fresh=True)
    try:
        erp_return = _erp_return(server)
        _add_postings(w0, erp_return)
        keys = [
            k
            for (k,) in _rows(
                w0,
                "select idempotency_key from writeback.adjustments "
                f"where rma_number = '{KILL_RMA}' and status = 'approved'",
            )
        ]
        assert len(keys) == len(PRODUCTS)
        uninterrupted = work / "uninterrupted.duckdb"
        shutil.copyfile(w0, uninterrupted)
        push = _push(uninterrupted, server, work).start()
        try:
            assert push.wait(RUN_TIMEOUT_S) == 0, push.output()
        finally:
            push.finish()
        assert len(CREATED_LINE.findall(push.stdout())) == len(PRODUCTS), push.output()
    finally:
        server.stop()
    expected = snapshot(uninterrupted)

    server = start_tryton(erp_dir, fresh=True)
    try:
        assert _erp_return(server) == erp_return  # the same ERP history: the same ids
        killed = work / "killed.duckdb"
        shutil.copyfile(w0, killed)
        push = _push(killed, server, work).start()
        try:
            hit = wait_until(
                lambda: push.process.poll() is not None or CREATED_LINE.search(push.stdout()),
                RUN_TIMEOUT_S,
            )
            assert push.process.poll() is None, f"the push ended before the kill: {push.output()}"
            assert hit
            push.kill()
            stages = push.stages()
            assert wait_gone(push.token) == []
        finally:
            push.finish()
        left = _rows(
            killed,
            "select adjustment_id, idempotency_key, in_flight_since is not null "
            "from writeback.adjustments where status = 'approved'",
        )
        # proven: the kill landed in the push, which had not finished its batch
        assert stages[-1:] == ["writeback"] and "pushed:" not in push.stdout(), stages
        assert left, "the push had finished before the kill"
        # the adjustment in flight when killed: its document may already be in the ERP
        in_erp_at_kill = {
            adjustment_id
            for adjustment_id, key, in_flight in left
            if in_flight and _documents(server, [key])[key] > 0
        }

        again = _push(killed, server, work).start()
        try:
            assert again.wait(RUN_TIMEOUT_S) == 0, again.output()
        finally:
            again.finish()
        # no duplicate ERP document: exactly one per adjustment, counted in Tryton
        assert _documents(server, keys) == dict.fromkeys(keys, 1)
    finally:
        server.stop()

    # A document the ERP already had when the push died is adopted by its key on the rerun:
    # the attempt log says `found`, truthfully, where the uninterrupted push says `created`.
    columns, rows = expected["writeback.attempts"]
    at = {c: i for i, c in enumerate(columns)}
    adjusted = []
    for row in rows:
        if row[at["adjustment_id"]] in in_erp_at_kill and row[at["outcome"]] == "created":
            row = tuple("found" if i == at["outcome"] else v for i, v in enumerate(row))
        adjusted.append(row)
    expected["writeback.attempts"] = (columns, sorted(adjusted, key=repr))
    assert differences(expected, snapshot(killed)) == []
    sent = _rows(killed, "select erp_document from writeback.adjustments where status = 'sent'")
    assert len(sent) == len(PRODUCTS) and all(json.loads(d)["id"] for (d,) in sent)
