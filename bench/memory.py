"""Memory benchmark: peak RSS of ingestion (CDC files + file drops) on a simulated landscape.

DESIGN §10, issue 9. Goal: <= 512 MB while landing the 10-million-event stream of a
1,000,000-return landscape. Each repeat lands the whole landscape into an empty warehouse in a
fresh process (`land_cdc_files`, then `land_files`) and reads that process's peak resident set
size from `os.wait4`. The reference, measured in the same run, is the same process importing the
landing code and opening the warehouse without landing anything (the interpreter, DuckDB and
Arrow themselves): the difference is what landing adds.

The default size (10,000 returns, about 190,000 events) keeps `make bench` within its budget;
the goal's size is `--returns 1000000`.

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --returns 1000000 --repeats 1
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PYTHON,
    add_common_args,
    child_env,
    emit,
    fmt_spread,
    landscape,
    landscape_counts,
    link_copy,
    log,
    result_line,
    run_child,
    spread,
    stage_ingest,
    work_dir,
)
from pipelines.lib.warehouse import LANDING_MEMORY_LIMIT

NAME = "ingest_memory"
GOAL_MB = 512.0
GOAL_RETURNS = 1_000_000

BASELINE_CODE = """
import sys
from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.files import land_files
from pipelines.lib.warehouse import connection
with connection(sys.argv[1]) as con:
    con.execute("select 1").fetchall()
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, returns=10_000, repeats=3)
    parser.add_argument(
        "--duckdb-memory-limit",
        metavar="SIZE",
        help="experiment: set DuckDB's memory_limit (e.g. 256MB) for the whole ingestion",
    )
    args = parser.parse_args(argv)
    landing, _ = landscape(args.returns, args.seed, args.as_of)
    counts = landscape_counts(landing)
    work = work_dir(NAME, args.work)

    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    baseline = run_child([PYTHON, "-c", BASELINE_CODE, str(run_dir / "empty.duckdb")], child_env())

    peaks, seconds, info = [], [], {}
    for i in range(max(1, args.repeats)):
        shutil.rmtree(run_dir, ignore_errors=True)
        lc = link_copy(landing, run_dir / "landing")
        log(f"ingest {i + 1}/{args.repeats}: {counts['events']:,} events")
        run, info = stage_ingest(lc, run_dir / "warehouse.duckdb", args.duckdb_memory_limit)
        log(f"  peak {run.peak_rss_mb:.0f} MB, {run.seconds:.1f} s")
        peaks.append(run.peak_rss_mb)
        seconds.append(run.seconds)
    shutil.rmtree(run_dir, ignore_errors=True)

    peak, secs = spread(peaks, 1), spread(seconds, 2)
    figures = {
        "returns": args.returns,
        "seed": args.seed,
        **counts,
        "peak_rss_mb": peak,
        "baseline_rss_mb": round(baseline.peak_rss_mb, 1),
        "landing_adds_mb": round(peak["max"] - baseline.peak_rss_mb, 1),
        "ingest_s": secs,
        "events_per_s": round(counts["events"] / secs["median"]),
        "landed": info,
        "duckdb_memory_limit": args.duckdb_memory_limit
        or f"landing default ({LANDING_MEMORY_LIMIT})",
        "goal_mb": GOAL_MB,
        "goal_size": args.returns >= GOAL_RETURNS,
        "goal_met": args.returns >= GOAL_RETURNS and peak["max"] <= GOAL_MB,
    }
    line = result_line(
        NAME,
        figures,
        "goal 512 MB; baseline = the same process importing the landing code, landing nothing",
        GOAL_MB / peak["max"],
    )
    summary = (
        f"{args.returns:,} returns / {counts['events']:,} events landed: peak RSS "
        f"{fmt_spread(peak, unit='MB', digits=0)} (baseline {baseline.peak_rss_mb:.0f} MB, "
        f"goal 512 MB); {fmt_spread(secs, digits=1)}, "
        f"{figures['events_per_s']:,} events/s"
        + (f"; DuckDB memory_limit {args.duckdb_memory_limit}" if args.duckdb_memory_limit else "")
    )
    emit(line, summary, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
