"""Incremental benchmark: 10,000 new events on a landscape, from their arrival to the report.

DESIGN §10, issue 9. Goal: <= 5 s from the files being dropped into the landing directory to
`recon.mismatches` (what `returnsync report` shows) having them.

The new events are the landscape's own latest ones: the last lines of every CDC topic file and
of the newest returns-SaaS and Shopify drop (10,000 lines in all, shared in proportion to the
files' lengths) are held back. The base warehouse (everything else, ingested, built and
reconciled) is prepared once and copied for each repeat; then the held-back lines arrive as new
files (`cdc/<topic>.late.ndjson`, `<source>/<newest>-late.ndjson`) and the clock runs through

1. ingest: `land_cdc_files` + `land_files` (already landed files are skipped by sha256);
2. build: `dbt build` (seeds and models, rules included; the intermediate and mart models
   recompute only the returns the new rows touch, `intermediate.int_returns_touched`, whose row
   counts per kind the figures report as `incremental_scope`);
3. reconcile: `apply_lifecycle`;
4. report: the open mismatches read back (`list_mismatches`, as `returnsync report`).

After the increment the warehouse holds the whole landscape, so the open mismatches must be
exactly the simulator's answer key. The base is built at the same warehouse path as the runs, so
every measured build reuses dbt's partial parse as a long-lived deployment does (a changed
RETURNSYNC_DB changes dbt's profile and forces a full parse); `dbt_fixed_s` is the build's wall
time outside dbt's own `elapsed_time` (process start, imports, adapter, parse, artifacts).

    .venv/bin/python bench/incremental.py
    .venv/bin/python bench/incremental.py --returns 1000000 --events 10000 --repeats 1
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
    answer_key,
    check_answer_key,
    child_env,
    dbt_elapsed,
    dbt_slowest,
    emit,
    fmt_spread,
    landscape,
    landscape_counts,
    link_copy,
    log,
    result_line,
    run_child,
    spread,
    stage_build,
    stage_ingest,
    stage_reconcile,
    stage_report,
    work_dir,
)

NAME = "incremental"
STAGES = ("ingest", "build", "reconcile", "report")
GOAL_S = 5.0
LATE = "-late"


def split_files(landing: Path) -> list[Path]:
    """The files whose tails are held back: every CDC topic file, the newest returns-SaaS and
    Shopify drops."""
    files = sorted((landing / "cdc").glob("*.ndjson"))
    for source, pattern in (("returns_saas", "webhooks_*.ndjson"), ("shopify", "refunds_*.ndjson")):
        drops = sorted((landing / source).glob(pattern))
        if drops:
            files.append(drops[-1])
    return files


def line_count(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def hold_back(landing: Path, events: int, late_dir: Path) -> int:
    """Cut the last lines of the split files (in place: the hard link is replaced, the cache is
    untouched) into `late_dir/<same relative path, -late>`; returns the lines held back."""
    files = split_files(landing)
    counts = {p: line_count(p) for p in files}
    total = sum(counts.values())
    if late_dir.exists():
        shutil.rmtree(late_dir)
    held = 0
    for i, path in enumerate(files):
        n = counts[path]
        share = events - held if i == len(files) - 1 else round(events * n / total)
        share = max(0, min(share, n - 1))  # keep at least one line: the base file still lands
        if share == 0:
            continue
        rel = path.relative_to(landing)
        late = late_dir / rel.with_name(rel.stem + LATE + rel.suffix)
        late.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        # streamed: a file read whole (GBs at 1,000,000 returns) would stay in this process's
        # RSS, and every stage forked afterwards starts with it in its ru_maxrss
        with open(path, "rb") as src, open(tmp, "wb") as kept, open(late, "wb") as cut:
            for number, line in enumerate(src):
                (kept if number < n - share else cut).write(line)
        before = path.stat()
        os.replace(tmp, path)
        # the cut file keeps the drop's time, as if written then: a file modified within the
        # last seconds is never cached by `filehash.sha256_cached` (it could still be changing)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        held += share
    return held


def drop(late_dir: Path, landing: Path) -> None:
    """The arrival: the late files appear in the landing directory (hidden name, then renamed,
    as an uploader would)."""
    for src in sorted(p for p in late_dir.rglob("*") if p.is_file()):
        dst = landing / src.relative_to(late_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name("." + dst.name)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def run_db(work: Path) -> Path:
    """The warehouse path every build uses, the base's included: dbt's profile holds the path
    (RETURNSYNC_DB), and a changed profile makes dbt parse the whole project again, which a
    long-lived deployment (one warehouse path) never pays."""
    return work / "run" / "warehouse.duckdb"


def run_landing_dir(work: Path) -> Path:
    """The landing directory every ingestion uses, the base's included (see `run_db`)."""
    return work / "run" / "landing"


def prepare_base(landing: Path, work: Path, events: int, as_of: str) -> tuple[Path, Path, int]:
    """The base landing directory and warehouse (everything but the held-back lines), built
    once in full at the runs' warehouse path (then kept aside as `base/warehouse.duckdb`)."""
    base = work / "base"
    for path in (base, work / "run"):
        if path.exists():
            shutil.rmtree(path)
    base_landing = link_copy(landing, base / "landing")
    held = hold_back(base_landing, events, base / "late")
    db = run_db(work)
    log(f"base warehouse: {held:,} lines held back; ingest, build, reconcile")
    # Ingested from the runs' landing path (hard links: same inodes and mtimes), so each run finds
    # the landed files in the sha256 cache as a deployment's fixed landing directory would; a
    # copy at another path would be hashed again (16 GB at 1,000,000 returns).
    stage_ingest(link_copy(base_landing, run_landing_dir(work)), db)
    stage_build(db, as_of, work / "target")
    stage_reconcile(db)
    shutil.move(db, base / "warehouse.duckdb")
    return base_landing, base / "warehouse.duckdb", held


def scope_text(scope: dict[str, int], returns: int) -> str:
    if "full" in scope or "return" not in scope:
        return "every return recomputed"
    return f"{scope['return']:,} of {returns:,} returns recomputed"


def touched_scope(db: Path) -> dict[str, int]:
    """What the incremental dbt models recomputed (`intermediate.int_returns_touched`: rows per
    kind; a `full` row means everything)."""
    run = run_child(
        [
            PYTHON,
            "-c",
            "import duckdb, json, sys\n"
            "con = duckdb.connect(sys.argv[1], read_only=True)\n"
            "rows = con.execute('select kind, count(*) from intermediate.int_returns_touched "
            "group by 1 order by 1').fetchall()\n"
            "print(json.dumps(dict(rows)))",
            str(db),
        ],
        env=child_env(),
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, returns=10_000, repeats=3)
    parser.add_argument("--events", type=int, default=10_000, help="new events (default 10,000)")
    args = parser.parse_args(argv)
    landing, _ = landscape(args.returns, args.seed, args.as_of)
    counts = landscape_counts(landing)
    expected = answer_key(landing)
    work = work_dir(NAME, args.work)
    base_landing, base_db, held = prepare_base(landing, work, args.events, args.as_of)

    runs = []
    for i in range(max(1, args.repeats)):
        run_dir = work / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_landing = link_copy(base_landing, run_landing_dir(work))
        db = run_db(work)
        shutil.copyfile(base_db, db)
        drop(work / "base" / "late", run_landing)
        log(f"increment {i + 1}/{args.repeats}: {held:,} new events dropped")
        r: dict = {}
        r["ingest"], r["ingest_info"] = stage_ingest(run_landing, db)
        r["build"] = stage_build(db, args.as_of, work / "target")
        r["dbt_elapsed_s"] = dbt_elapsed(work / "target")
        r["dbt_nodes"] = dbt_slowest(work / "target")
        if r["dbt_elapsed_s"] is not None:  # process start, adapter, partial parse, artifacts
            r["dbt_fixed_s"] = round(r["build"].seconds - r["dbt_elapsed_s"], 2)
        r["scope"] = touched_scope(db)
        r["reconcile"], r["lifecycle"] = stage_reconcile(db)
        r["report"], report = stage_report(db)
        total = sum(r[s].seconds for s in STAGES)
        log(
            f"  {total:.1f} s: "
            + ", ".join(f"{s} {r[s].seconds:.1f} s ({r[s].cpu_seconds:.1f} CPU)" for s in STAGES)
        )
        check_answer_key(report["found"], expected)
        runs.append(r)
    shutil.rmtree(work / "run", ignore_errors=True)
    shutil.rmtree(work / "base", ignore_errors=True)

    total = spread([sum(r[s].seconds for s in STAGES) for r in runs])
    cpu = spread([sum(r[s].cpu_seconds for s in STAGES) for r in runs])
    stages = {
        s: {
            "s": spread([r[s].seconds for r in runs]),
            "cpu_s": spread([r[s].cpu_seconds for r in runs]),
            "peak_rss_mb": spread([r[s].peak_rss_mb for r in runs], 0),
        }
        for s in STAGES
    }
    dbt_el = [r["dbt_elapsed_s"] for r in runs if r["dbt_elapsed_s"] is not None]
    dbt_fixed = [r["dbt_fixed_s"] for r in runs if "dbt_fixed_s" in r]
    figures = {
        "returns": args.returns,
        "seed": args.seed,
        "as_of": args.as_of,
        "landscape_events": counts["events"],
        "new_events": held,
        "landed": runs[-1]["ingest_info"],
        "lifecycle": runs[-1]["lifecycle"],
        "total_s": total,
        "total_cpu_s": cpu,
        "stages": stages,
        "dbt_models_elapsed_s": spread(dbt_el) if dbt_el else None,
        "dbt_fixed_s": spread(dbt_fixed) if dbt_fixed else None,
        "dbt_nodes": runs[-1]["dbt_nodes"],
        "incremental_scope": runs[-1]["scope"],
        "answer_key_rows": len(expected),
        "precision_recall": 1.0,
        "goal_s": GOAL_S,
        "goal_met": total["median"] <= GOAL_S,
    }
    line = result_line(
        NAME,
        figures,
        "goal 5 s from arrival to the report",
        GOAL_S / total["median"],
        packages=("dbt-core", "dbt-duckdb"),
    )
    parts = ", ".join(f"{s} {fmt_spread(stages[s]['s'], digits=1)}" for s in STAGES)
    summary = (
        f"{held:,} new events on {args.returns:,} returns ({counts['events']:,} events): "
        f"{fmt_spread(total, digits=1)} arrival to report, {cpu['median']:.1f} s CPU "
        f"(goal 5 s); {parts}"
        + (
            f" (dbt models {fmt_spread(figures['dbt_models_elapsed_s'], digits=1)}, "
            f"dbt fixed {fmt_spread(figures['dbt_fixed_s'], digits=1)})"
            if dbt_el and dbt_fixed
            else ""
        )
        + f"; {scope_text(figures['incremental_scope'], args.returns)}"
        f"; report = answer key ({len(expected):,})"
    )
    emit(line, summary, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
