"""`returnsync run`: the main job (ingest, build, reconcile) on the configured warehouse."""

import contextlib
import tempfile
from pathlib import Path

import click

from pipelines.settings import Settings


@click.command()
@click.option(
    "--landing",
    "landing_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Landing directory of file drops (default: RETURNSYNC_LANDING or data/landing).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="DuckDB warehouse file (default: RETURNSYNC_DB or data/returnsync.duckdb).",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="ISO-8601",
    help="Reconciliation time, e.g. 2026-11-01T00:00:00Z (default: now).",
)
@click.option("--quiet", "-q", is_flag=True, help="Only print the summary, not Dagster's step log.")
def run(landing_dir: Path | None, db_path: Path | None, as_of: str | None, quiet: bool) -> None:
    """Run the main job: land every source, build the dbt models, reconcile, then print a summary.

    The job is the code location's `main_job` (all assets), executed in this process on the
    Dagster instance in DAGSTER_HOME if set, otherwise on a throw-away one.
    """
    from pipelines.lib.summary import print_summary
    from pipelines.runner import run_main_job

    settings = Settings.from_env(landing_dir=landing_dir, db_path=db_path)
    if not settings.uses_kafka and not settings.landing_dir.is_dir():
        raise click.ClickException(
            f"landing directory {settings.landing_dir} does not exist "
            "(create it, point RETURNSYNC_LANDING or --landing at one, "
            "or run `returnsync simulate`)"
        )
    click.echo(f"returnsync run: warehouse {settings.db_path}", err=True)
    if quiet:
        ok = _run_capturing_stdout(lambda: run_main_job(settings, as_of=as_of, quiet=True))
    else:
        ok = run_main_job(settings, as_of=as_of)
    print_summary(settings, click.echo)
    if not ok:
        raise click.ClickException("the main job failed; see the log above")


TAIL_LINES = 40  # of the captured dbt log, shown when a quiet run fails


def _run_capturing_stdout(job) -> bool:
    """Run `job` with standard output captured (dagster-dbt echoes every dbt log line there);
    if the job fails, the captured log's last lines go to standard error."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as captured:
        with contextlib.redirect_stdout(captured):
            ok = job()
        if not ok:
            captured.seek(0)
            tail = captured.read().splitlines()[-TAIL_LINES:]
            if tail:
                click.echo("last lines of the dbt log:", err=True)
                click.echo("\n".join(tail), err=True)
    return ok
