"""Dagster's bookkeeping of an increment: one run's events stored in the instance (issue 24).

A run of `main_job` stores ~880 events in the Dagster instance (10,000 returns, 2026-12-06: 87
planned materializations and 190 planned checks at the run's start, then per step its start,
outputs, materializations, check evaluations and success). This benchmark runs a job of the
same shape, with no work in its steps (one multi-asset as dagster-dbt's, `--assets` assets and
`--checks` checks, and `--steps - 1` single-asset steps), through `execute_in_process` on a
persistent instance, so what it times is Dagster's side of a run: creating, logging and storing
the events. Each way of storing is an instance of its own, alternated run by run (same load),
after one untimed run each (the index database exists, as in a long-lived instance):

- `dagster`: Dagster's default `SqliteEventLogStorage` (a `dagster.yaml` without storage);
- `returnsync`: `pipelines.eventlog.ReturnsyncEventLogStorage` (what `runner.instance()` writes);
- `returnsync+batch` (only with `--ways`): the same with `DAGSTER_EVENT_BATCH_SIZE` set
  (Dagster then hands the planned events of the run's start to `store_event_batch`); it did not
  pay on 2026-12-06 (bench/README.md), so returnsync does not set it.

Figures per way: the run's wall and CPU seconds, the events stored and the seconds spent in the
storage's `store_event`/`store_event_batch`. The ratio is dagster / returnsync CPU-seconds.

    .venv/bin/python bench/eventlog.py --work /tmp/<name>-bench
    .venv/bin/python bench/eventlog.py --ways dagster,returnsync,returnsync+batch
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit, fmt_spread, log, result_line, spread, work_dir

NAME = "eventlog"
BATCH_SIZE = "1000"  # DAGSTER_EVENT_BATCH_SIZE for `returnsync+batch`
WAYS = ("dagster", "returnsync", "returnsync+batch")
# as `returnsync watch --quiet`: no line per event on standard error (every event still stored)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def make_job(assets: int, checks: int, steps: int):
    """A job shaped as main_job: one multi-asset (dbt's) and single-asset steps, no work."""
    import dagster as dg

    singles = max(0, steps - 1)
    many = max(1, assets - singles)
    columns = dg.TableSchema(columns=[dg.TableColumn(f"column_{i}", "varchar") for i in range(12)])
    specs = [dg.AssetSpec(["marts", f"model_{i}"], group_name="marts") for i in range(many)]
    check_specs = [
        dg.AssetCheckSpec(f"test_{j}", asset=specs[j % many].key) for j in range(checks - singles)
    ]

    @dg.multi_asset(specs=specs, check_specs=check_specs, name="dbt_like")
    def dbt_like():
        for spec in specs:
            yield dg.MaterializeResult(
                asset_key=spec.key,
                metadata={
                    "unique_id": f"model.returnsync.{spec.key.path[-1]}",
                    "execution_duration": 0.05,
                    "dagster/column_schema": columns,
                    "dagster/row_count": 1000,
                },
            )
        for spec in check_specs:
            yield dg.AssetCheckResult(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=True,
                metadata={"unique_id": f"test.returnsync.{spec.name}", "failures": 0},
            )

    def single(i: int):
        @dg.asset(
            key=["raw", f"source_{i}"],
            check_specs=[dg.AssetCheckSpec("landed", asset=["raw", f"source_{i}"])],
        )
        def _single():
            yield dg.MaterializeResult(metadata={"rows": 10, "files": 1})
            yield dg.AssetCheckResult(check_name="landed", passed=True)

        return _single

    defs = dg.Definitions(assets=[dbt_like, *[single(i) for i in range(singles)]])
    return defs.resolve_implicit_global_asset_job_def()


def home_for(work: Path, way: str) -> Path:
    from pipelines.runner import DAGSTER_YAML, dagster_yaml

    home = work / way.replace("+", "_")
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    text = DAGSTER_YAML if way == "dagster" else dagster_yaml(home)
    (home / "dagster.yaml").write_text(text)
    return home


class StoreTimer:
    """Seconds spent in the storage's store calls, and the events they stored."""

    def __init__(self, storage) -> None:
        self.seconds, self.events = 0.0, 0
        for name in ("store_event", "store_event_batch"):
            setattr(storage, name, self._wrap(getattr(storage, name), name))

    def _wrap(self, fn, name):
        def timed(arg):
            t = time.perf_counter()
            try:
                return fn(arg)
            finally:
                self.seconds += time.perf_counter() - t
                self.events += len(arg) if name == "store_event_batch" else 1

        return timed


def one_run(job, inst, way: str) -> dict:
    if way.endswith("+batch"):
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = BATCH_SIZE
    else:
        os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
    timer = StoreTimer(inst.event_log_storage)
    c0, t0 = time.process_time(), time.perf_counter()
    result = job.execute_in_process(instance=inst, run_config=QUIET)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.success
    stored = len(inst.get_records_for_run(result.run_id, limit=100_000).records)
    assert stored == timer.events, (stored, timer.events)
    return {"wall_s": wall, "cpu_s": cpu, "events": stored, "store_s": timer.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=87)
    parser.add_argument("--checks", type=int, default=190)
    parser.add_argument("--steps", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ways", default="dagster,returnsync", help=f"comma-separated, of {', '.join(WAYS)}"
    )
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    assert set(ways) <= set(WAYS), ways

    import dagster as dg

    work = work_dir(NAME, args.work)
    job = make_job(args.assets, args.checks, args.steps)
    instances = {way: dg.DagsterInstance.from_config(str(home_for(work, way))) for way in ways}
    runs: dict[str, list[dict]] = {way: [] for way in ways}
    try:
        for way in ways:  # untimed: the index database and the first run's tables exist
            one_run(job, instances[way], way)
        for i in range(args.repeats):
            for way in ways if i % 2 == 0 else reversed(ways):
                r = one_run(job, instances[way], way)
                runs[way].append(r)
                log(
                    f"{i + 1}/{args.repeats} {way}: {r['wall_s']:.2f} s, {r['cpu_s']:.2f} CPU-s, "
                    f"{r['events']} events, store {r['store_s']:.2f} s"
                )
    finally:
        os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        for inst in instances.values():
            inst.dispose()
    load1 = os.getloadavg()[0]
    figures = {
        "assets": args.assets,
        "checks": args.checks,
        "steps": args.steps,
        "events": runs[ways[0]][0]["events"],
        "load1_after": round(load1, 2),
    }
    for way in ways:
        figures[way] = {
            key: spread(r[key] for r in runs[way]) for key in ("wall_s", "cpu_s", "store_s")
        }
    ratio = None
    if "dagster" in ways and "returnsync" in ways:
        ratio = figures["dagster"]["cpu_s"]["median"] / figures["returnsync"]["cpu_s"]["median"]
    line = result_line(
        NAME,
        figures,
        "Dagster's default SqliteEventLogStorage, same job, alternated (CPU-s)",
        ratio,
        packages=("dagster", "sqlalchemy"),
    )
    parts = [
        f"{way}: run {fmt_spread(figures[way]['wall_s'], digits=2)}, "
        f"{figures[way]['cpu_s']['median']:.2f} CPU-s, in the store "
        f"{figures[way]['store_s']['median']:.2f} s"
        for way in ways
    ]
    summary = (
        f"one run of a job shaped as main_job ({figures['events']} events: {args.assets} assets, "
        f"{args.checks} checks, {args.steps} steps, no work), {args.repeats} runs each: "
        + "; ".join(parts)
        + f"; load1 {load1:.1f}"
    )
    emit(line, summary, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
