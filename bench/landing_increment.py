"""The fixed cost of landing a file drop in an increment (issue 24): what the landing step of
`raw__returns_saas_webhooks` (assets/files.py: open the warehouse, `land_files` for its source,
the Great Expectations suite on the rows landed, the source marked ok) costs for the one late
webhooks file of bench/incremental.py's increment, in a fresh process:

- `first`: the step as the first increment of a process runs it (Great Expectations imported and
  its suites made there: what `returnsync run` pays every time, and what `returnsync watch` paid
  in its first increment before `pipelines.lib.files.warm_up`);
- `warmed`: the same step after `warm_up()` (untimed), as `returnsync watch` runs it now.

Each repeat lands the same late file on a fresh copy of the same base warehouse (every earlier
drop of the landscape landed), the two modes alternated; CPU seconds are the child's own (user +
system, `resource`), beside wall time and the machine's load.

    .venv/bin/python bench/landing_increment.py --work /tmp/me-bench
"""

from __future__ import annotations

import argparse
import json
import os
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
    link_copy,
    log,
    result_line,
    run_child,
    spread,
    work_dir,
)
from bench.incremental import drop, hold_back

NAME = "landing_increment"
TABLE = "returns_saas_webhooks"
FOLDERS = ("returns_saas", "shopify", "amazon", "b2b", "reference")

STEP = """
import json, resource, sys, time
from pathlib import Path

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

db, landing, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
from pipelines.lib import source_status
from pipelines.lib.files import land_files, warm_up
from pipelines.lib.warehouse import connection
if mode == "warmed":
    warm_up()
t0, c0 = time.perf_counter(), cpu()
from expectations import validate_batch
with connection(db) as con:
    summary = land_files(con, landing, sources=["returns_saas_webhooks"])["returns_saas_webhooks"]
    t1, c1 = time.perf_counter(), cpu()
    outcome = validate_batch(
        con, "returns_saas_webhooks", summary.landed_sha256, since=summary.ingested_at
    )
    source_status.mark_ok(con, "returns_saas_webhooks")
t2, c2 = time.perf_counter(), cpu()
print(json.dumps({
    "rows": summary.rows, "files": summary.files_landed, "validated": outcome.rows,
    "wall_s": t2 - t0, "cpu_s": c2 - c0, "land_cpu_s": c1 - c0, "validate_cpu_s": c2 - c1,
}))
"""


def prepare(landing: Path, work: Path, events: int) -> tuple[Path, Path, Path]:
    """The base landing (the late lines held back) and warehouse (every file drop landed)."""
    base = work / "base"
    shutil.rmtree(base, ignore_errors=True)
    for name in FOLDERS:
        if (landing / name).is_dir():
            link_copy(landing / name, base / "landing" / name)
    link_copy(landing / "cdc", base / "landing" / "cdc")  # hold_back shares the 10,000 lines
    held = hold_back(base / "landing", events, base / "late", activity_only=True)
    shutil.rmtree(base / "landing" / "cdc")
    shutil.rmtree(base / "late" / "cdc", ignore_errors=True)
    log(f"base: {held:,} late lines in all, the file drops' own landed (webhooks' late file kept)")
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    run_landing = link_copy(base / "landing", run / "landing")
    code = (
        "import sys\nfrom pipelines.lib.files import land_files\n"
        "from pipelines.lib.warehouse import connection\n"
        "with connection(sys.argv[1]) as con:\n    land_files(con, sys.argv[2])\n"
    )
    run_child([PYTHON, "-c", code, str(run / "warehouse.duckdb"), str(run_landing)], child_env())
    shutil.move(run / "warehouse.duckdb", base / "warehouse.duckdb")
    for late in list((base / "late").rglob("*")):
        if late.is_file() and late.parent.name != "returns_saas":
            late.unlink()
    return base / "landing", base / "warehouse.duckdb", base / "late"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, returns=10_000, repeats=3)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args(argv)
    source, _ = landscape(args.returns, args.seed, args.as_of)
    work = work_dir(NAME, args.work)
    base_landing, base_db, late = prepare(source, work, args.events)
    runs: dict[str, list[dict]] = {"first": [], "warmed": []}
    load = [os.getloadavg()[0]]
    for i in range(args.repeats):
        for mode in runs:
            run = work / "run"
            shutil.rmtree(run, ignore_errors=True)
            run_landing = link_copy(base_landing, run / "landing")
            shutil.copyfile(base_db, run / "warehouse.duckdb")
            drop(late, run_landing)
            child = run_child(
                [PYTHON, "-c", STEP, str(run / "warehouse.duckdb"), str(run_landing), mode],
                child_env(),
            )
            r = json.loads(child.stdout.strip().splitlines()[-1])
            if r["files"] != 1 or r["rows"] != r["validated"] or not r["rows"]:
                raise RuntimeError(f"the late file did not land and validate whole: {r}")
            runs[mode].append(r)
            load.append(os.getloadavg()[0])
            log(f"{i + 1}/{args.repeats} {mode}: {r}")
    shutil.rmtree(work / "run", ignore_errors=True)
    shutil.rmtree(work / "base", ignore_errors=True)

    def cell(mode: str) -> str:
        rs = runs[mode]
        return (
            f"{mode} {fmt_spread(spread([r['cpu_s'] for r in rs]), 'CPU-s')} "
            f"(landing {fmt_spread(spread([r['land_cpu_s'] for r in rs]), 'CPU-s')}, GE "
            f"{fmt_spread(spread([r['validate_cpu_s'] for r in rs]), 'CPU-s')}), wall "
            f"{fmt_spread(spread([r['wall_s'] for r in rs]))}"
        )

    first = spread([r["cpu_s"] for r in runs["first"]])["median"]
    warmed = spread([r["cpu_s"] for r in runs["warmed"]])["median"]
    rows = runs["first"][0]["rows"]
    figures = {"returns": args.returns, "rows": rows, "runs": runs, "load1": load}
    line = result_line(
        NAME,
        figures,
        "the same step as the first increment of a process (GE imported in it), same late file, "
        "same base, alternated; ratio = its median CPU-s / the warmed one's",
        first / warmed if warmed else None,
        packages=("great_expectations",),
    )
    summary = (
        f"the webhooks landing step of a {args.returns:,}-return increment (one late file, "
        f"{rows:,} rows, landed and validated): {cell('first')}; {cell('warmed')}; load1 "
        + ", ".join(f"{x:.1f}" for x in load)
        + " on 2 cores shared"
    )
    emit(line, summary, append=not args.no_append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
