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

`--path` measures the product's own paths instead of the stages above (issue 24), from the
drop to the open mismatches read back, on a base built by `returnsync run` (the main job: GE,
dbt tests, lifecycle, planning, publishing included):
- `cold`: `returnsync run --as-of ...` in a new process (imports, Dagster, dbt started as
  `returnsync-dbt`, a partial parse);
- `warm`: `returnsync watch` already running (dbt parsed once, in-process) sees the drop and runs
  the increment; the time is from the drop to its progress line, plus the report. The watch's
  line says where the increment's time went (its slowest steps); its CPU is read from /proc.

    .venv/bin/python bench/incremental.py --path warm --repeats 1
    .venv/bin/python bench/incremental.py --path cold --repeats 1

`--keep` leaves the base and the last run in `--work` (to look into the warehouse after an
increment); `--reuse-base` starts from such a base instead of building it again (~21 min at
1,000,000 returns). The figures' `incremental_scope` is `int_returns_touched`'s rows per kind.

`--event-log both` runs each repeat twice, alternated, with the runs' Dagster instance on
returnsync's event log storage (`pipelines.eventlog`, what a new instance gets) and on Dagster's
default one (an instance made before it): a row each, the figures' `event_log` says which.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PROJECT_ROOT,
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
GOAL_S = 5.0  # the warm path's (and the stages') goal
COLD_GOAL_S = 15.0  # a cold `returnsync run`
LATE = "-late"


# master data: what a return's documents point at. Held back, the base has ERP lines whose
# product is unknown (no sku), and two such lines of a return give one mismatch key twice, which
# the dbt test of `recon_mismatches_current` rightly fails; the job paths hold back activity only.
DIMENSION_TOPICS = ("product_product", "currency_currency", "stock_location", "party_party")


def split_files(landing: Path, activity_only: bool = False) -> list[Path]:
    """The files whose tails are held back: every CDC topic file (`activity_only`: but the
    master data's), the newest returns-SaaS and Shopify drops."""
    files = sorted((landing / "cdc").glob("*.ndjson"))
    if activity_only:
        files = [p for p in files if not any(t in p.name for t in DIMENSION_TOPICS)]
    for source, pattern in (("returns_saas", "webhooks_*.ndjson"), ("shopify", "refunds_*.ndjson")):
        drops = sorted((landing / source).glob(pattern))
        if drops:
            files.append(drops[-1])
    return files


def line_count(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def hold_back(landing: Path, events: int, late_dir: Path, activity_only: bool = False) -> int:
    """Cut the last lines of the split files (in place: the hard link is replaced, the cache is
    untouched) into `late_dir/<same relative path, -late>`; returns the lines held back."""
    files = split_files(landing, activity_only)
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


def fresh_run(work: Path, base_landing: Path, base_db: Path) -> tuple[Path, Path]:
    """An empty run directory with a hard-linked copy of the base's landing and a copy of its
    warehouse: (landing, warehouse)."""
    run_dir = work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_landing = link_copy(base_landing, run_landing_dir(work))
    db = run_db(work)
    shutil.copyfile(base_db, db)
    return run_landing, db


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


# --- the product's paths: `returnsync run` (cold) and `returnsync watch` (warm) -------------


def job_env(work: Path) -> dict[str, str]:
    """The runs' settings: one data directory, warehouse and landing path for every run."""
    return child_env(
        RETURNSYNC_DATA_DIR=str(work / "run" / "data"),
        RETURNSYNC_DB=str(run_db(work)),
        RETURNSYNC_LANDING=str(run_landing_dir(work)),
        RETURNSYNC_ANALYST_DB=str(work / "run" / "data" / "analyst.duckdb"),
    )


CLI = "from pipelines.cli import main; main()"


def prepare_job_base(landing: Path, work: Path, events: int, as_of: str) -> tuple[Path, Path, int]:
    """As `prepare_base`, the base built by `returnsync run` (the whole main job)."""
    base = work / "base"
    for path in (base, work / "run"):
        if path.exists():
            shutil.rmtree(path)
    base_landing = link_copy(landing, base / "landing")
    held = hold_back(base_landing, events, base / "late", activity_only=True)
    log(f"base warehouse: {held:,} lines held back; returnsync run (main job)")
    link_copy(base_landing, run_landing_dir(work))
    run_child([PYTHON, "-c", CLI, "run", "--as-of", as_of, "--quiet"], env=job_env(work))
    shutil.move(run_db(work), base / "warehouse.duckdb")
    # the published analyst copy, which a deployment keeps between runs: publishing starts from
    # it and writes only what changed (issue 24)
    if (work / "run" / "data" / "analyst.duckdb").exists():
        shutil.copyfile(work / "run" / "data" / "analyst.duckdb", base / "analyst.duckdb")
    return base_landing, base / "warehouse.duckdb", held


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (and its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks


class WatchProcess:
    def __init__(self, env: dict[str, str], as_of: str) -> None:
        cmd = [PYTHON, "-c", CLI, "watch", "--as-of", as_of, "--interval", "0.1", "--quiet"]
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter(), line.rstrip("\n")))

    def wait_for(self, pattern: str, timeout: float = 3600) -> tuple[float, str]:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for at, line in self.lines:
                if re.search(pattern, line):
                    return at, line
            if self.proc.poll() is not None:
                raise RuntimeError(f"watch exited: {[x for _, x in self.lines][-5:]}")
            time.sleep(0.02)
        raise RuntimeError(f"no {pattern!r} in {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


EVENT_LOGS = ("returnsync", "dagster")


def use_event_log(work: Path, way: str) -> None:
    """The runs' Dagster instance (`<work>/run/.dagster_home`, beside the data directory) with
    returnsync's event log storage (what `runner.instance()` writes for a new instance) or with
    Dagster's default one (a dagster.yaml of an older returnsync)."""
    from pipelines.runner import DAGSTER_HOME_DIR, DAGSTER_YAML, dagster_yaml

    home = work / "run" / DAGSTER_HOME_DIR
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(dagster_yaml(home) if way == "returnsync" else DAGSTER_YAML)


def main_paths(args, landing: Path, counts: dict, expected) -> int:
    """`--path cold|warm` (see the module doc), once per `--event-log` way, alternated."""
    work = work_dir(f"{NAME}_{args.path}", args.work)
    kept = work / "base" / "warehouse.duckdb"
    if args.reuse_base and kept.exists():
        # the base a `--keep` run left (the same landscape, events and as_of: the caller's word)
        base_landing, base_db = work / "base" / "landing", kept
        held = sum(line_count(p) for p in (work / "base" / "late").rglob("*") if p.is_file())
        log(f"base warehouse: reused from {work / 'base'} ({held:,} lines held back)")
    else:
        base_landing, base_db, held = prepare_job_base(landing, work, args.events, args.as_of)
    ways = list(EVENT_LOGS) if args.event_log == "both" else [args.event_log]
    by_way: dict[str, list[dict]] = {way: [] for way in ways}
    for i in range(max(1, args.repeats)):
        for way in ways if i % 2 else list(reversed(ways)):
            by_way[way].append(
                one_increment(args, work, base_landing, base_db, held, expected, i, way)
            )
    if not args.keep:
        shutil.rmtree(work / "run", ignore_errors=True)
        shutil.rmtree(work / "base", ignore_errors=True)
    for way, runs in by_way.items():
        emit_paths(args, counts, expected, held, runs, way)
    return 0


def one_increment(args, work, base_landing, base_db, held, expected, i, way) -> dict:
    """One increment on a fresh copy of the base, with the instance of event log `way`."""
    run_landing, db = fresh_run(work, base_landing, base_db)
    run_dir = work / "run"
    if (work / "base" / "analyst.duckdb").exists():  # the base's published copy (see above)
        (run_dir / "data").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "base" / "analyst.duckdb", run_dir / "data" / "analyst.duckdb")
    use_event_log(work, way)
    log(f"increment {i + 1}/{args.repeats}: the Dagster instance with {way}'s event log")
    r: dict = {}
    if args.path == "cold":
        drop(work / "base" / "late", run_landing)
        log(f"increment {i + 1}/{args.repeats}: {held:,} new events dropped; returnsync run")
        run = run_child(
            [PYTHON, "-c", CLI, "run", "--as-of", args.as_of, "--quiet"], env=job_env(work)
        )
        r["increment_s"], r["increment_cpu_s"] = run.seconds, run.cpu_seconds
        r["detail"] = ""
    else:
        watch = WatchProcess(job_env(work), args.as_of)
        try:
            _, ready = watch.wait_for(r"^watch: ready")
            watch.wait_for(r"^watch: increment 1 ")  # the catch-up at start: nothing new
            cpu0 = proc_cpu_s(watch.proc.pid)
            log(f"increment {i + 1}/{args.repeats}: {held:,} new events dropped; watching")
            t0 = time.perf_counter()
            drop(work / "base" / "late", run_landing)
            t1, line = watch.wait_for(r"^watch: increment 2 ")
            r["increment_cpu_s"] = proc_cpu_s(watch.proc.pid) - cpu0
        finally:
            watch.stop()
        if " ok in " not in line:
            raise RuntimeError(line)
        r["increment_s"] = t1 - t0
        r["detail"] = line.split(" ok in ", 1)[1]
        r["ready"] = ready
    r["report"], report = stage_report(db)
    r["scope"] = touched_scope(db)
    log(
        f"  {r['increment_s']:.1f} s + report {r['report'].seconds:.1f} s; {r['detail']}; "
        f"{scope_text(r['scope'], args.returns)}"
    )
    check_answer_key(report["found"], expected)
    return r


def emit_paths(args, counts, expected, held, runs, way) -> None:
    total = spread([r["increment_s"] + r["report"].seconds for r in runs])
    cpu = spread([r["increment_cpu_s"] + r["report"].cpu_seconds for r in runs])
    goal = GOAL_S if args.path == "warm" else COLD_GOAL_S
    load1 = os.getloadavg()[0]
    figures = {
        "returns": args.returns,
        "seed": args.seed,
        "as_of": args.as_of,
        "path": args.path,
        "landscape_events": counts["events"],
        "new_events": held,
        "total_s": total,
        "total_cpu_s": cpu,
        "increment_s": spread([r["increment_s"] for r in runs]),
        "report_s": spread([r["report"].seconds for r in runs]),
        "where": [r["detail"] for r in runs],
        "incremental_scope": [r["scope"] for r in runs],
        "answer_key_rows": len(expected),
        "precision_recall": 1.0,
        "goal_s": goal,
        "goal_met": total["median"] <= goal,
        "load1_after": round(load1, 2),
        "event_log": way,
    }
    name = f"{NAME}_{args.path}"
    line = result_line(
        name,
        figures,
        f"goal {goal:g} s from arrival to the report ({args.path} path)",
        goal / total["median"],
        packages=("dbt-core", "dbt-duckdb", "dagster"),
    )
    what = "returnsync watch (dbt parsed once)" if args.path == "warm" else "returnsync run"
    summary = (
        f"{held:,} new events on {args.returns:,} returns ({counts['events']:,} events), "
        f"{what}: {fmt_spread(total, digits=1)} arrival to report, {cpu['median']:.1f} s CPU "
        f"(goal {goal:g} s); increment {fmt_spread(figures['increment_s'], digits=1)}, report "
        f"{fmt_spread(figures['report_s'], digits=1)}"
        + (f"; the increment's slowest steps: {runs[-1]['detail']}" if runs[-1]["detail"] else "")
        + f"; {scope_text(runs[-1]['scope'], args.returns)}"
        + f"; report = answer key ({len(expected):,}); Dagster event log: {way}"
        + f"; load1 {load1:.1f}"
    )
    emit(line, summary, append=not args.no_append)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, returns=10_000, repeats=3)
    parser.add_argument("--events", type=int, default=10_000, help="new events (default 10,000)")
    parser.add_argument(
        "--path",
        choices=("stages", "cold", "warm"),
        default="stages",
        help="stages (default): ingest, dbt build, lifecycle, report as separate processes; "
        "cold: `returnsync run`; warm: `returnsync watch` (see the module doc)",
    )
    parser.add_argument(
        "--event-log",
        choices=(*EVENT_LOGS, "both"),
        default="returnsync",
        help="--path cold|warm: the Dagster instance's event log storage: returnsync's (default, "
        "as a new instance has it), Dagster's default, or both alternated (a row each)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="--path cold|warm: keep the work directory's base and last run (to look into, or "
        "for --reuse-base)",
    )
    parser.add_argument(
        "--reuse-base",
        action="store_true",
        help="--path cold|warm: start from the base a --keep run left in --work (same "
        "landscape, --events and --as-of) instead of building it again",
    )
    args = parser.parse_args(argv)
    if args.path != "stages":
        landing, _ = landscape(args.returns, args.seed, args.as_of)
        return main_paths(args, landing, landscape_counts(landing), answer_key(landing))
    landing, _ = landscape(args.returns, args.seed, args.as_of)
    counts = landscape_counts(landing)
    expected = answer_key(landing)
    work = work_dir(NAME, args.work)
    base_landing, base_db, held = prepare_base(landing, work, args.events, args.as_of)

    runs = []
    for i in range(max(1, args.repeats)):
        run_landing, db = fresh_run(work, base_landing, base_db)
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
