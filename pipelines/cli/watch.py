"""`returnsync watch`: the warm path (DESIGN §10). A long-lived process that runs the main job
for each increment as soon as it arrives.

It loads the code location and parses the dbt project once (`pipelines.dbt.WarmDbt`, dbt in
this process), then waits. When something new is there (a file in the landing directory added
or changed, a Kafka topic's end offset moved) it runs `main_job` in this process, as a run of
the Dagster instance (DAGSTER_HOME, else .dagster_home beside the data): landing, validation,
the dbt build with its tests, the lifecycle, planning and publishing, nothing skipped. One
progress line per increment says what triggered it, how it went and where the time went.

Between increments it holds no DuckDB connection (dbt's is closed after every build), so
`returnsync report`, `acknowledge` and analysts' readers work while it waits; a run that would
wait for them waits as `run` does (RETURNSYNC_LOCK_WAIT_S). Detection needs no warehouse: the
landing files' sizes and times, and Kafka's end offsets.

Ctrl-C or SIGTERM while it waits stops it at once; during an increment, the increment finishes
first (a second signal aborts it: the warehouse rolls back what it had not committed). Exit
status: 0 stopped by a signal or after `--max-increments`; 1 an increment failed and
`--stop-on-failure` was given; 2 configuration; 3 the warehouse stayed locked.

dbt's unit tests run in the first increment after each parse of the project, not in every one
(they test SQL on fixed fixtures, so one parse gives one result: pipelines.dbt.WarmDbt); the
progress line says whether they ran. Data tests run in every increment.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from pathlib import Path

import click

from pipelines.cli.options import landing_option, warehouse_option
from pipelines.errors import ConfigError, JobFailed
from pipelines.settings import Settings, parse_as_of

# not drops: hidden and editor files (a partial copy's temp name), and what landing itself writes
# under the landing directory (`_quarantine/`, pipelines.lib.files.QUARANTINE_DIR)
IGNORED_PARTS = (".", "~", "_")


def landing_snapshot(landing: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime ns) of every regular file under the landing directory."""
    seen: dict[str, tuple[int, int]] = {}
    if not landing.is_dir():
        return seen
    for path in landing.rglob("*"):
        if any(part.startswith(IGNORED_PARTS) for part in path.relative_to(landing).parts):
            continue
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen


class Detector:
    """What is new since the last increment started: landing files, Kafka end offsets."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.files: dict[str, tuple[int, int]] = {}
        self.offsets: dict = {}

    def _offsets(self) -> dict:
        if not self.settings.uses_kafka:
            return {}
        from pipelines.lib.cdc.kafka.offsets import end_offsets

        return end_offsets(self.settings)

    def poll(self) -> tuple[str | None, dict, dict]:
        """(what changed, or None; the state to `accept` when the increment starts)."""
        files = landing_snapshot(self.settings.landing_dir)
        offsets = self._offsets()
        new = [p for p, sig in files.items() if self.files.get(p) != sig]
        moved = sum(max(0, end - self.offsets.get(tp, 0)) for tp, end in offsets.items())
        parts = []
        if new:
            parts.append(f"{len(new)} new or changed file(s)")
        if moved:
            parts.append(f"{moved} new Kafka record(s)")
        return (", ".join(parts) or None), files, offsets

    def accept(self, files: dict, offsets: dict) -> None:
        self.files, self.offsets = files, offsets


def _step_seconds(inst, run_id: str) -> dict[str, float]:
    seconds = {}
    with contextlib.suppress(Exception):
        for stat in inst.get_run_step_stats(run_id):
            if stat.start_time and stat.end_time:
                seconds[stat.step_key] = stat.end_time - stat.start_time
    return seconds


SLOWEST_SHOWN = 3


def _slowest(steps: dict[str, float]) -> str:
    """` (dbt 2.1 s, <step> 0.4 s, ...)`: where an increment's time went, slowest first."""
    names = {"returnsync_dbt_assets": "dbt"}
    top = sorted(steps.items(), key=lambda kv: -kv[1])[:SLOWEST_SHOWN]
    if not top:
        return ""
    return " (" + ", ".join(f"{names.get(k, k)} {v:.1f} s" for k, v in top) + ")"


def _unit_tests(count: int | None) -> str:
    """`; dbt unit tests: 20 run` in the first build after a parse, `...: not run` after (they
    passed on this parse: pipelines.dbt.WarmDbt); nothing when dbt did not build."""
    if count is None:
        return ""
    return f"; dbt unit tests: {count} run" if count else "; dbt unit tests: not run (passed)"


def _open_mismatches(settings: Settings) -> int | None:
    """Open mismatches after an increment (a short read; None when it cannot be read)."""
    from pipelines.lib.warehouse import connection

    with contextlib.suppress(Exception), connection(settings.db_path, read_only=True) as con:
        return con.execute(
            "select count(*) from recon.mismatches where status = 'open'"
        ).fetchone()[0]
    return None


class _Stop:
    """SIGINT/SIGTERM: stop at once while idle; after the increment while busy; abort on a
    second signal."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.busy = False

    def __call__(self, signum, _frame) -> None:
        if self.busy and not self.event.is_set():
            self.event.set()
            click.echo("watch: stopping after this increment (again to abort it)", err=True)
            return
        self.event.set()
        if self.busy:
            raise KeyboardInterrupt


@click.command("watch")
@landing_option
@warehouse_option
@click.option(
    "--as-of",
    "as_of",
    metavar="ISO-8601",
    help="Reconciliation time of every increment (default: when each increment starts).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between looks for new input.",
)
@click.option(
    "--max-increments",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many increments (default: run until stopped).",
)
@click.option("--stop-on-failure", is_flag=True, help="Exit 1 when an increment fails.")
@click.option("--quiet", "-q", is_flag=True, help="Only the progress lines (no step log).")
def watch(
    landing_dir: Path | None,
    db_path: Path | None,
    as_of: str | None,
    interval: float,
    max_increments: int | None,
    stop_on_failure: bool,
    quiet: bool,
) -> None:
    """Run the main job on every increment, with dbt parsed once (the warm path).

    Waits for new files in the landing directory (or new Kafka records), then runs everything
    `returnsync run` runs, as a run of the Dagster instance, and prints one line per increment.
    Holds no lock on the warehouse while it waits. Stop it with Ctrl-C or SIGTERM.
    """
    settings = Settings.from_env(landing_dir=landing_dir, db_path=db_path)
    checked = parse_as_of(as_of)
    if not settings.uses_kafka and not settings.landing_dir.is_dir():
        raise ConfigError(
            f"landing directory {settings.landing_dir} does not exist "
            "(create it, point RETURNSYNC_LANDING or --landing at one)"
        )
    if settings.erp_pull:
        from pipelines.lib.erp import TrytonAdapter

        TrytonAdapter.from_settings(settings)

    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _watch(settings, checked, interval, max_increments, stop_on_failure, quiet, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(settings, checked, interval, max_increments, stop_on_failure, quiet, stop) -> None:
    from pipelines.dbt import WarmDbt, install_warm
    from pipelines.lib.warehouse import initialize
    from pipelines.runner import (
        LOGGER,
        dagster_home,
        describe_failure,
        instance,
        load_definitions,
        main_job,
        new_log_file,
        returnsync_logger,
        run_config,
        uses_default_event_log,
    )

    started = time.monotonic()
    initialize(settings.db_path)
    job = main_job(load_definitions(settings)).with_logger_defs({LOGGER: returnsync_logger})
    warm = WarmDbt(settings)
    install_warm(warm)
    from pipelines.lib.files import warm_up as warm_up_landing

    warm_up_landing()  # GE's import (~3 CPU-s) and the readers: paid here, not by increment 1
    detector = Detector(settings)
    job_as_of = checked.isoformat() if checked is not None else None
    click.echo(
        f"watch: ready in {time.monotonic() - started:.1f} s (dbt parsed once); warehouse "
        f"{settings.db_path}, landing {settings.landing_dir}; Ctrl-C to stop",
        err=True,
    )
    done = failed = 0
    try:
        with instance(settings) as inst:
            if uses_default_event_log(inst):
                click.echo(
                    f"watch: the Dagster instance in {dagster_home(settings)} stores events with "
                    "Dagster's default event log storage, which costs many seconds per increment "
                    "(its dagster.yaml predates returnsync's: README, 'The Dagster instance')",
                    err=True,
                )
            while not stop.event.is_set():
                what, files, offsets = detector.poll()
                if what is None:
                    stop.event.wait(interval)
                    continue
                detector.accept(files, offsets)
                run_id = str(uuid.uuid4())
                log_file = new_log_file(settings, run_id)
                t0 = time.monotonic()
                warm.last_unit_tests = warm.last_profile = None
                stop.busy = True
                try:
                    # dbt's own lines go to the run's log file, as with `run --quiet`
                    with (
                        open(log_file, "a", encoding="utf-8", buffering=1) as log,
                        contextlib.redirect_stdout(log),
                    ):
                        result = job.execute_in_process(
                            run_config=run_config(settings, job_as_of, quiet, log_file),
                            instance=inst,
                            raise_on_error=False,
                            run_id=run_id,
                        )
                finally:
                    stop.busy = False
                    warm.release()
                seconds = time.monotonic() - t0
                done += 1
                timing = (
                    f"{seconds:.1f} s{_slowest(_step_seconds(inst, result.run_id))}"
                    f"{_unit_tests(warm.last_unit_tests)}"
                    + (f"; {warm.last_profile.text()}" if warm.last_profile else "")
                )
                if result.success:
                    open_now = _open_mismatches(settings)
                    tail = f"; {open_now} open mismatch(es)" if open_now is not None else ""
                    click.echo(
                        f"watch: increment {done} ({what}): run {result.run_id[:8]} ok in "
                        f"{timing}{tail}",
                        err=True,
                    )
                else:
                    failed += 1
                    failure, _ = describe_failure(result)
                    click.echo(
                        f"watch: increment {done} ({what}): run {result.run_id[:8]} FAILED in "
                        f"{timing}: {failure} (full log: {log_file})",
                        err=True,
                    )
                    if stop_on_failure:
                        raise JobFailed(f"increment {done} failed: {failure}")
                if max_increments is not None and done >= max_increments:
                    break
    except KeyboardInterrupt:
        click.echo("watch: increment aborted", err=True)
    finally:
        install_warm(None)
        warm.release()
    click.echo(
        f"watch: stopped after {done} increment(s), {failed} failed; dbt parsed {warm.parses} "
        "time(s)",
        err=True,
    )
