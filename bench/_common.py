"""Shared helpers of the benchmark scripts (DESIGN §10): output line, RESULTS.md row, repeats,
peak memory of child processes, cached simulated landscapes, and the pipeline's stages.

Every benchmark prints ONE JSON line `{name, figures, reference, ratio, versions, date}` on
standard output and appends one row to `bench/RESULTS.md` (see bench/README.md for the table).
Progress and notes go to standard error.

Memory is measured on child processes: each measured stage runs in its own Python (or dbt)
process, started with `run_child`, and its peak resident set size is the `ru_maxrss` that
`os.wait4` reports for it (on Linux this includes the child's own waited-for children, e.g. the
dbt process under a Python stage), so the benchmark's own memory never pollutes the figure.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "bench" / "RESULTS.md"
CACHE_DIR = PROJECT_ROOT / ".cache" / "bench"
PYTHON = sys.executable
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "| date | name | figures | reference | ratio | versions |\n"
    "|---|---|---|---|---|---|\n"
)
DEFAULT_AS_OF = "2026-03-01T00:00:00Z"

if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


# --- output ------------------------------------------------------------------------------------


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions(*packages: str) -> dict[str, str]:
    """python, the machine's cores and load, and the installed version of each package."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["cpus"] = str(os.cpu_count())
    out["load1"] = f"{os.getloadavg()[0]:.1f}"
    return out


def result_line(
    name: str, figures: dict, reference: str, ratio: float | None, packages: Sequence[str] = ()
) -> dict:
    return {
        "name": name,
        "figures": figures,
        "reference": reference,
        "ratio": None if ratio is None else round(ratio, 3),
        "versions": versions("duckdb", *packages),
        "date": now_utc(),
    }


def emit(line: dict, summary: str, append: bool = True, results: Path = RESULTS) -> None:
    """Print the JSON line on stdout and (unless `append` is false) add the RESULTS.md row.

    `summary` is the human-readable figures cell of the row (no `|`).
    """
    print(json.dumps(line), flush=True)
    if append:
        record(line, summary, results)


def record(line: dict, summary: str, results: Path = RESULTS) -> None:
    """Append one row to RESULTS.md (created with its header if missing)."""
    if not results.exists():
        results.write_text(RESULTS_HEADER)
    vers = ", ".join(f"{k} {v}" for k, v in line["versions"].items())
    ratio = "" if line["ratio"] is None else line["ratio"]
    cells = [line["date"], line["name"], summary, line["reference"], str(ratio), vers]
    with results.open("a") as out:
        out.write("| " + " | ".join(c.replace("|", "/") for c in cells) + " |\n")


# --- repeats -----------------------------------------------------------------------------------


def spread(values: Iterable[float], digits: int = 3) -> dict[str, float]:
    """{min, median, max, n} of the repeats."""
    vals = sorted(values)
    return {
        "min": round(vals[0], digits),
        "median": round(statistics.median(vals), digits),
        "max": round(vals[-1], digits),
        "n": len(vals),
    }


def fmt_spread(s: dict, unit: str = "s", digits: int = 2) -> str:
    """`median unit (min..max, n=3)`, or just the value for one run."""
    med = f"{s['median']:.{digits}f} {unit}"
    if s["n"] == 1:
        return med
    return f"{med} ({s['min']:.{digits}f}..{s['max']:.{digits}f}, n={s['n']})"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- child processes: wall time and peak RSS -------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss_mb: float  # ru_maxrss of the child (and its waited-for descendants)
    cpu_seconds: float  # user + system CPU of the child and its waited-for descendants
    stdout: str


def run_child(
    argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> ChildRun:
    """Run argv to completion; wall seconds and peak RSS (MB) from `os.wait4`. Raises on failure.

    stdout is captured (via a file, so a chatty child never blocks); stderr passes through.
    """
    import tempfile

    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, env=env, cwd=cwd or PROJECT_ROOT, stdin=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... exited {proc.returncode}:\n{text[-4000:]}")
    return ChildRun(seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, text)


def run_python(code: str, env: dict[str, str] | None = None) -> ChildRun:
    """Run a Python snippet in a fresh interpreter of this venv (project root on sys.path)."""
    return run_child([PYTHON, "-c", code], env=env)


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    env.update(extra)
    return env


# --- cached landscapes -------------------------------------------------------------------------


def landscape(
    returns: int, seed: int, as_of: str = DEFAULT_AS_OF, cache_dir: Path = CACHE_DIR
) -> tuple[Path, float | None]:
    """A simulated landing directory for (returns, seed, as_of), generated once and cached.

    Returns (path, seconds spent simulating now, or None when it came from the cache). The
    cache key is the directory name. The landscape is simulated into a temporary sibling
    (`<key>.partial-<pid>`), its `.complete` marker written there last, and the directory is
    renamed to its key only then: the key's directory exists only complete, so another process
    (or a second benchmark waiting for the cache) never sees half a landscape, and an
    interrupted generation leaves only a partial directory, removed by the next attempt. The
    marker lists every file's size: a cache that was written to since (runs must only ever see a
    hard-linked copy) is refused, not silently measured.
    """
    key = f"landscape-r{returns}-s{seed}-{as_of.replace(':', '').replace('-', '')}"
    path = cache_dir / key
    if (path / ".complete").exists():
        check_unaltered(path)
        return path, None
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{key}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            shutil.rmtree(stale, ignore_errors=True)  # an interrupted generation's leftovers
    if path.exists():  # a directory without its marker: from before the cache was atomic
        shutil.rmtree(path)
    partial = path.with_name(f"{key}.partial-{os.getpid()}")
    log(f"simulating {returns:,} returns (seed {seed}) into {path} (cached for later runs)")
    run = run_child(
        [
            str(Path(PYTHON).with_name("returnsync")),
            "simulate",
            "--returns",
            str(returns),
            "--seed",
            str(seed),
            "--out",
            str(partial),
            "--as-of",
            as_of,
            "--quiet",
        ],
        env=child_env(),
    )
    marker = {"date": now_utc(), "simulate_s": round(run.seconds, 2), "load1": os.getloadavg()[0]}
    marker["files"] = file_sizes(partial)
    (partial / ".complete").write_text(json.dumps(marker) + "\n")
    partial.rename(path)  # atomic: the key's directory appears complete, or not at all
    return path, run.seconds


def file_sizes(landing: Path) -> dict[str, int]:
    """Every file under a landing directory (but the marker) and its size in bytes."""
    return {
        str(p.relative_to(landing)): p.stat().st_size
        for p in sorted(landing.rglob("*"))
        if p.is_file() and p.name != ".complete"
    }


def check_unaltered(landing: Path) -> None:
    """Exit if a cached landscape's files differ from those it was simulated with. A marker
    written before the list existed gets it now (the cache is trusted once)."""
    marker_path = landing / ".complete"
    marker = json.loads(marker_path.read_text())
    now = file_sizes(landing)
    if "files" not in marker:
        marker["files"] = now
        marker_path.write_text(json.dumps(marker) + "\n")
        return
    was = marker["files"]
    changed = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
    if changed:
        raise SystemExit(
            f"the cached landscape {landing} was altered after it was simulated "
            f"({len(changed)} files added, removed or resized, e.g. {changed[:3]}); a run must "
            "only ever see a hard-linked copy. Delete the directory to simulate it again."
        )


def cached_simulate_seconds(landing: Path) -> float | None:
    """How long the cached landscape took to simulate when it was generated (None if unknown)."""
    try:
        return json.loads((landing / ".complete").read_text()).get("simulate_s")
    except (OSError, ValueError, AttributeError):
        return None


def answer_key(landing: Path) -> set[tuple[str, str, str]]:
    """The simulator's expected mismatches as (rule, rma_number, sku)."""
    import csv

    with open(landing / "expected_mismatches.csv", newline="") as fh:
        return {(r["rule"], r["rma_number"], r["sku"]) for r in csv.DictReader(fh)}


def check_answer_key(found: list, expected: set[tuple[str, str, str]]) -> None:
    """Exit when the open mismatches are not exactly the answer key (precision = recall = 1)."""
    got = {tuple(x) for x in found}
    if got != expected:
        missed, extra = sorted(expected - got), sorted(got - expected)
        raise SystemExit(
            f"open mismatches differ from the answer key: {len(missed)} missed "
            f"{missed[:3]}, {len(extra)} extra {extra[:3]}"
        )


def landscape_counts(landing: Path) -> dict[str, int]:
    """CDC records and file records of a simulated landscape (its landscape.json)."""
    meta = json.loads((landing / "landscape.json").read_text())
    counts = meta.get("counts", {})
    cdc = sum(counts.get("cdc_records", {}).values())
    files = sum(counts.get("file_records", {}).values())
    return {"cdc_records": cdc, "file_records": files, "events": cdc + files}


def link_copy(src: Path, dst: Path) -> Path:
    """A hard-linked copy of a landing directory (instant, no extra space).

    Landing may move a file into `_quarantine/`, and the incremental benchmark replaces files
    with shorter ones; on a linked copy that leaves the cache intact. `src` is resolved first:
    `cp -a` copies a symlink as a symlink, so a cache reached through one (a clone whose
    `.cache/bench` links to another checkout's) was once written through, and lost lines.
    """
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(Path(src).resolve()), str(dst)], check=True)
    return dst


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# --- the pipeline's stages, each in its own process ---------------------------------------------

INGEST_CODE = """
import json, sys
from pathlib import Path
from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.files import land_files
from pipelines.lib.warehouse import connection
landing, db = Path(sys.argv[1]), Path(sys.argv[2])
with connection(db) as con:
    if len(sys.argv) > 3:  # an experiment: DuckDB's memory_limit for the whole ingestion
        con.execute(f"set memory_limit = '{sys.argv[3]}'")
    cdc = land_cdc_files(con, landing, progress=False)
    files = land_files(con, landing)
print(json.dumps({
    "cdc_landed": sum(cdc.landed.values()), "cdc_dead_letters": cdc.dead_letters,
    "file_rows": sum(s.rows for s in files.values()),
    "file_dead_letters": sum(s.dead_letters for s in files.values()),
}))
"""

RECONCILE_CODE = """
import json, sys
from pipelines.lib.recon.lifecycle import apply_lifecycle
from pipelines.lib.warehouse import connection
with connection(sys.argv[1]) as con:
    s = apply_lifecycle(con)
print(json.dumps({"opened": s.opened, "resolved": s.resolved, "open_total": s.open_total}))
"""

REPORT_CODE = """
import json, sys
from pipelines.lib.recon.lifecycle import list_mismatches
from pipelines.lib.warehouse import connection
with connection(sys.argv[1], read_only=True) as con:
    rows = list_mismatches(con, status="open")
found = sorted({(r["rule"], r["rma_number"] or "", r["sku"] or "") for r in rows})
print(json.dumps({"open": len(rows), "found": found}))
"""


def stage_ingest(landing: Path, db: Path, memory_limit: str | None = None) -> tuple[ChildRun, dict]:
    """CDC files then file drops (the landing libraries), one process. `memory_limit` (e.g.
    "256MB") sets DuckDB's for the whole process (`land_files` lowers it on its own; by default
    `land_cdc_files` leaves DuckDB's default, 80% of RAM)."""
    argv = [PYTHON, "-c", INGEST_CODE, str(landing), str(db)]
    run = run_child(argv + ([memory_limit] if memory_limit else []), env=child_env())
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def stage_build(db: Path, as_of: str, target: Path) -> ChildRun:
    """`dbt build` of seeds and models (the recon rules included) for `as_of`, dbt's own process."""
    from pipelines.dbt import dbt_executable
    from pipelines.settings import DBT_PROJECT_DIR

    return run_child(
        [
            dbt_executable(),
            "--quiet",
            "build",
            "--resource-type",
            "seed",
            "--resource-type",
            "model",
            "--vars",
            json.dumps({"as_of": as_of}),
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target),
            "--log-path",
            str(target / "logs"),
        ],
        env=child_env(RETURNSYNC_DB=str(db)),
    )


def stage_reconcile(db: Path) -> tuple[ChildRun, dict]:
    """The mismatch lifecycle merge (`apply_lifecycle`) after the dbt rules."""
    run = run_child([PYTHON, "-c", RECONCILE_CODE, str(db)], env=child_env())
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def stage_report(db: Path) -> tuple[ChildRun, dict]:
    """What `returnsync report` reads: the open mismatches, and their distinct
    (rule, rma_number, sku) in `found` (the answer key's shape)."""
    run = run_child([PYTHON, "-c", REPORT_CODE, str(db)], env=child_env())
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def work_dir(name: str, given: Path | None) -> Path:
    """Scratch directory of one benchmark: `--work`, else `.cache/bench/work/<name>` (a stable
    path, so dbt's partial parse in `<work>/target` is reused from one run to the next)."""
    path = given if given is not None else CACHE_DIR / "work" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def dbt_elapsed(target: Path) -> float | None:
    """dbt's own `elapsed_time` of the last invocation (run_results.json): model execution,
    without the process start and project parse."""
    try:
        return json.loads((target / "run_results.json").read_text())["elapsed_time"]
    except (OSError, ValueError, KeyError):
        return None


def dbt_slowest(target: Path, n: int = 5) -> dict:
    """Where dbt's time went in its last invocation: the sum of the nodes' execution times and
    the n slowest nodes (run_results.json)."""
    try:
        results = json.loads((target / "run_results.json").read_text())["results"]
    except (OSError, ValueError, KeyError):
        return {}
    timed_nodes = sorted(
        ((r["execution_time"], r["unique_id"].split(".")[-1]) for r in results), reverse=True
    )
    return {
        "nodes": len(timed_nodes),
        "nodes_sum_s": round(sum(t for t, _ in timed_nodes), 2),
        "slowest": {name: round(t, 2) for t, name in timed_nodes[:n]},
    }


def add_common_args(parser, returns: int, repeats: int) -> None:
    parser.add_argument(
        "--returns", type=int, default=returns, help=f"landscape size (default {returns:,})"
    )
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument(
        "--repeats", type=int, default=repeats, help=f"measured runs (default {repeats})"
    )
    parser.add_argument(
        "--no-append", action="store_true", help="print the JSON line only; no RESULTS.md row"
    )
    parser.add_argument("--as-of", default=DEFAULT_AS_OF, help=f"as-of (default {DEFAULT_AS_OF})")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="scratch directory for warehouses (default: .cache/bench/work/<benchmark>)",
    )
