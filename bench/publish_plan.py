"""Publishing and planning after an increment: only what changed, against everything (issue 24).

The two steps of every increment that used to cost what the history is: republishing the analyst
copy (`pipelines.lib.publish`) and planning write-back adjustments (`pipelines.lib.writeback.plan`).
A base warehouse is built by `returnsync run` over the landscape without its last 10,000 events
(as `bench/incremental.py --path cold` does); its published file and its planning state are kept;
then the held-back events arrive and a second `returnsync run` lands, builds, reconciles, plans
and publishes them. On that warehouse, alternating, each step is measured both ways in this
process (CPU-seconds of the process, DuckDB's threads included, and wall time):

- publish: from scratch into an empty file (`incremental=False`, what every publish did before)
  against from the base's published file (only the differing rows written), comparing every row
  of both sides (`scoped=False`, as before issue 24's scope) and comparing only the rows of the
  build's touched scope where that is exact (`pipelines.lib.publish._Scope`); a base copy
  published before the copy recorded its warehouse state is published again first, untimed;
- planning: with `writeback.plan_state` emptied (every open mismatch examined, as before) against
  with the base's planning state (the open mismatches the increment changed examined). Both run
  after the increment's own planning, so neither inserts the few new adjustments it planned.
- the report (what `recon/mismatches` and `recon/mismatch_report` compute): every open
  mismatch's row computed twice in Python with the CSV written from them (what both assets did
  before) against the report cache (`pipelines.lib.recon.report`) as the base's run left it,
  brought up to date (only the changed cases computed), the CSV, totals, rule sums and the rows
  shown read from it, as the two assets do.

Both ways must give the same published tables, the same write-back tables and the same report
CSV, or the run fails.

    .venv/bin/python bench/publish_plan.py --work /tmp/me-bench
    .venv/bin/python bench/publish_plan.py --returns 100000 --work /tmp/me-bench-100k
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb

from bench import incremental as inc
from bench._common import (
    PYTHON,
    add_common_args,
    emit,
    fmt_spread,
    landscape,
    link_copy,
    log,
    result_line,
    run_child,
    spread,
    work_dir,
)
from pipelines.lib.publish import publish
from pipelines.lib.recon import report as rep
from pipelines.lib.recon.lifecycle import list_mismatches
from pipelines.lib.writeback import plan_adjustments

NAME = "publish_plan"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)  # the planning time of every measured planning


def prepare(args, work: Path) -> None:
    """`work/base/warehouse.duckdb` and `work/base/data/analyst.duckdb` (the base, built by
    `returnsync run`), `work/after.duckdb` (after the increment's `returnsync run`)."""
    if (work / "after.duckdb").exists():
        log(f"reusing {work / 'after.duckdb'} and its base")
        return
    landing, _ = landscape(args.returns, args.seed, args.as_of)
    base_landing, base_db, held = inc.prepare_job_base(landing, work, args.events, args.as_of)
    shutil.copytree(work / "run" / "data", work / "base" / "data", dirs_exist_ok=True)
    shutil.rmtree(work / "run")
    run_landing = link_copy(base_landing, inc.run_landing_dir(work))
    shutil.copyfile(base_db, inc.run_db(work))
    shutil.copytree(work / "base" / "data", work / "run" / "data")
    inc.drop(work / "base" / "late", run_landing)
    log(f"increment: {held:,} events dropped; returnsync run")
    run_child(
        [PYTHON, "-c", inc.CLI, "run", "--as-of", args.as_of, "--quiet"], env=inc.job_env(work)
    )
    shutil.move(inc.run_db(work), work / "after.duckdb")
    shutil.rmtree(work / "run")


def base_published(work: Path) -> None:
    """The base's published copy, as this code publishes it (one published before the copy
    recorded the warehouse state it was made from is published again, from scratch, untimed)."""
    target = work / "base" / "data" / "analyst.duckdb"
    con = duckdb.connect(str(target), read_only=True)
    try:
        recorded = con.execute(
            "select count(*) from duckdb_columns() where schema_name = 'main' "
            "and table_name = 'published' and column_name = 'models_state'"
        ).fetchone()[0]
    finally:
        con.close()
    if not recorded:
        log("the base's published copy records no warehouse state: published again (untimed)")
        publish(work / "base" / "warehouse.duckdb", target, incremental=False)


def base_report_cache(work: Path) -> None:
    """The base's report cache, as a run of this code leaves it (a base built before the cache
    existed gets it here, untimed)."""
    con = duckdb.connect(str(work / "base" / "warehouse.duckdb"))
    try:
        con.execute("set timezone = 'UTC'")  # as pipelines.lib.warehouse.connect sets it
        rep.refresh_open_report(con)
    finally:
        con.close()


def report_once(work: Path, scratch: Path, cached: bool):
    """What the two report assets compute after the increment, from scratch or from the base's
    cache: (wall, CPU-s, the CSV, (cases computed, cases) from the cache)."""
    db = scratch / "report.duckdb"
    shutil.copyfile(work / "after.duckdb", db)
    con = duckdb.connect(str(db))
    try:
        con.execute("set timezone = 'UTC'")
        if cached:  # the cache as the base's run left it
            con.execute("attach ? as base (read_only)", [str(work / "base" / "warehouse.duckdb")])
            con.execute(f"drop table if exists {rep.CACHE}")
            con.execute(rep._CACHE_DDL)
            con.execute(f"insert into {rep.CACHE} select * from base.{rep.CACHE}")
            con.execute("detach base")

        def assets_before():
            first = rep.build_report(con, status="open")  # recon/mismatches' checks
            list_mismatches(con, status="acknowledged")
            rep.money_by_currency(first.rows)
            report = rep.build_report(con, status="open")  # recon/mismatch_report
            rep.rule_summary(report.rows)
            return rep.to_csv(report.rows), (None, None)

        def assets_now():  # as assets/recon.py reads it
            with rep.catalog_read_once(con):
                first = rep.refresh_open_report(con)  # recon/mismatches' checks
                rep.cached_totals(con)
                rep.cached_rule_summary(con)
                rep.cached_cases(con)
                rep.cached_rows(con, per_rule=10)
            with rep.catalog_read_once(con):
                rep.refresh_open_report(con)  # recon/mismatch_report
                text = rep.cached_csv(con)
                rep.cached_totals(con)
                rep.cached_rule_summary(con)
                rep.cached_cases(con)
                rep.cached_rows(con, limit=200)
            return text, (first.recomputed_cases, first.cases)

        wall, cpu_s, (text, computed) = measured(assets_now if cached else assets_before)
        return wall, cpu_s, text, computed
    finally:
        con.close()


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measured(fn):
    t, c = time.perf_counter(), cpu()
    out = fn()
    return time.perf_counter() - t, cpu() - c, out


def contents(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() order by 1, 2"
        ).fetchall()
        out = {}
        for schema, table in tables:
            query = f'select * from {schema}."{table}" order by all'
            if (schema, table) == ("main", "published"):
                query = "select as_of, tables from main.published"
            out[f"{schema}.{table}"] = con.execute(query).fetchall()
        return out
    finally:
        con.close()


def writeback(con) -> dict:
    return {
        t: con.execute(f"select * from writeback.{t} order by all").fetchall()
        for t in ("adjustments", "exceptions")
    }


def plan_once(work: Path, scratch: Path, incremental: bool):
    db = scratch / "plan.duckdb"
    shutil.copyfile(work / "after.duckdb", db)
    con = duckdb.connect(str(db))
    try:
        con.execute("delete from writeback.plan_state")
        if incremental:  # the state the base's planning left
            con.execute("attach ? as base (read_only)", [str(work / "base" / "warehouse.duckdb")])
            con.execute("insert into writeback.plan_state select * from base.writeback.plan_state")
            con.execute("detach base")
        wall, cpu_s, summary = measured(lambda: plan_adjustments(con, now=NOW))
        return wall, cpu_s, summary, writeback(con)
    finally:
        con.close()


def publish_once(work: Path, scratch: Path, incremental: bool, scoped: bool = True):
    """Publish the warehouse after the increment: from scratch, or from the base's published
    copy comparing every row (`scoped=False`, as before) or only the build's touched rows."""
    way = ("scoped" if scoped else "inc") if incremental else "full"
    target = scratch / way / "analyst.duckdb"
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.parent.mkdir(parents=True)
    if incremental:
        shutil.copyfile(work / "base" / "data" / "analyst.duckdb", target)
    wall, cpu_s, result = measured(
        lambda: publish(work / "after.duckdb", target, incremental=incremental, scoped=scoped)
    )
    assert result.incremental == incremental
    return wall, cpu_s, result, target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, returns=10_000, repeats=2)
    parser.add_argument("--events", type=int, default=10_000, help="new events (default 10,000)")
    args = parser.parse_args(argv)
    work = work_dir(NAME, args.work)
    prepare(args, work)
    base_published(work)
    base_report_cache(work)
    scratch = work / "scratch"
    scratch.mkdir(exist_ok=True)
    runs: dict[str, list[tuple[float, float]]] = {}
    facts: dict = {}
    for i in range(max(1, args.repeats)):
        log(f"round {i + 1}/{args.repeats}: publish and plan, everything and only the changes")
        ways = {}
        order = ("full", "inc", "scoped") if i % 2 == 0 else ("scoped", "inc", "full")
        for way in order:
            ways[way] = publish_once(
                work, scratch, incremental=way != "full", scoped=way == "scoped"
            )
        full, part, scoped = ways["full"], ways["inc"], ways["scoped"]
        reference = contents(full[3])
        if reference != contents(part[3]) or reference != contents(scoped[3]):
            raise RuntimeError("an incremental publish differs from the one from scratch")
        written = sum(d + n for d, n in scoped[2].written.values())
        facts["publish_rows"] = sum(full[2].tables.values())
        facts["publish_rows_written"] = written
        facts["publish_compared"] = scoped[2].compared
        facts["publish_tables_scoped"] = sum(
            1 for how in scoped[2].compared.values() if not how.startswith("every row")
        )
        every = plan_once(work, scratch, incremental=False)
        changed = plan_once(work, scratch, incremental=True)
        if every[3] != changed[3]:
            raise RuntimeError("the incremental planning wrote other rows than the full one")
        facts["open_mismatches"] = every[2].examined
        facts["plan_examined"] = changed[2].examined
        ways = (False, True) if i % 2 == 0 else (True, False)
        reports = {cached: report_once(work, scratch, cached) for cached in ways}
        if reports[True][2] != reports[False][2]:
            raise RuntimeError("the report from the cache differs from the one from scratch")
        facts["report_cases_computed"], facts["report_cases"] = reports[True][3]
        for key, run in (
            ("publish_full", full),
            ("publish_incremental", part),
            ("publish_scoped", scoped),
            ("plan_full", every),
            ("plan_incremental", changed),
            ("report_full", reports[False]),
            ("report_cached", reports[True]),
        ):
            runs.setdefault(key, []).append((run[0], run[1]))
    shutil.rmtree(scratch, ignore_errors=True)
    load1 = os.getloadavg()[0]
    figures = {
        "returns": args.returns,
        "seed": args.seed,
        "as_of": args.as_of,
        "new_events": args.events,
        **{f"{k}_s": spread([w for w, _ in v]) for k, v in runs.items()},
        **{f"{k}_cpu_s": spread([c for _, c in v]) for k, v in runs.items()},
        **facts,
        "load1_after": round(load1, 2),
    }

    def cpu_of(key: str) -> float:
        return figures[f"{key}_cpu_s"]["median"]

    both = cpu_of("publish_scoped") + cpu_of("plan_incremental") + cpu_of("report_cached")
    before = cpu_of("publish_full") + cpu_of("plan_full") + cpu_of("report_full")
    line = result_line(
        NAME,
        figures,
        "publish + planning + report after an increment, everything (as before) vs what "
        "changed, CPU-s",
        before / both if both else None,
    )
    summary = (
        f"{args.events:,} new events on {args.returns:,} returns, after the increment: publish "
        f"{cpu_of('publish_scoped'):.2f} CPU-s from the published file comparing the build's "
        f"touched rows ({facts['publish_tables_scoped']} tables by scope; "
        f"{fmt_spread(figures['publish_scoped_s'])} wall, "
        f"{facts['publish_rows_written']:,} of {facts['publish_rows']:,} rows written), "
        f"{cpu_of('publish_incremental'):.2f} CPU-s comparing every row "
        f"({fmt_spread(figures['publish_incremental_s'])}), "
        f"{cpu_of('publish_full'):.2f} CPU-s from scratch "
        f"({fmt_spread(figures['publish_full_s'])}); planning {cpu_of('plan_incremental'):.2f} "
        f"CPU-s ({facts['plan_examined']:,} of {facts['open_mismatches']:,} open mismatches "
        f"examined, {fmt_spread(figures['plan_incremental_s'])}) against "
        f"{cpu_of('plan_full'):.2f} CPU-s for all ({fmt_spread(figures['plan_full_s'])}); "
        f"the two report assets {cpu_of('report_cached'):.2f} CPU-s from the cache "
        f"({facts['report_cases_computed']:,} of {facts['report_cases']:,} cases computed, "
        f"{fmt_spread(figures['report_cached_s'])}) against {cpu_of('report_full'):.2f} CPU-s "
        f"computing every open row twice ({fmt_spread(figures['report_full_s'])}); "
        f"same published tables, write-back rows and report CSV both ways; load1 {load1:.1f} "
        "on 2 cores"
    )
    emit(line, summary, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
