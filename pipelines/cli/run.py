"""`returnsync run`: the main job (ingest, build, reconcile) on the configured warehouse.

Everything that can be checked is checked before anything lands (DESIGN §12): the settings, the
`--as-of` time (ISO-8601, at most a day ahead), the landing directory, the ERP credentials when
the ERP is pulled, and the warehouse itself (waited for while another process holds it).

Exit codes: 0 ok; 1 the job failed (one line: the step and its error, and the run's log file; no
summary) or finished partially (a source is stale: the summary says which, nothing was planned);
2 bad usage or configuration; 3 the warehouse stayed locked.
"""

import contextlib
import uuid
from pathlib import Path

import click

from pipelines.cli.options import landing_option, warehouse_option
from pipelines.errors import ConfigError, JobFailed
from pipelines.settings import Settings, parse_as_of

NOT_READ_SHOWN = 20  # landing paths not read, listed in the summary (the rest in the run's log)


@click.command()
@landing_option
@warehouse_option
@click.option(
    "--as-of",
    "as_of",
    metavar="ISO-8601",
    help="Reconciliation time, e.g. 2026-11-01T00:00:00Z; UTC when it has no offset; at most a "
    "day in the future (default: now).",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Only print the summary (the step log goes to the log file).",
)
def run(landing_dir: Path | None, db_path: Path | None, as_of: str | None, quiet: bool) -> None:
    """Run the main job: land every source, build the dbt models, reconcile, then print a summary.

    The job is the code location's `main_job` (all assets), executed in this process and
    recorded in the Dagster instance the UI (`make dev`) reads: DAGSTER_HOME if set, else
    `.dagster_home` beside the data directory. Its full log is written to
    <data dir>/logs/run-*.log. Exit status: 0 ok, 1 failed or partial (a source is
    stale), 2 usage or configuration error, 3 the warehouse stayed locked.
    """
    settings = Settings.from_env(landing_dir=landing_dir, db_path=db_path)
    checked = parse_as_of(as_of)
    if not settings.uses_kafka and not settings.landing_dir.is_dir():
        raise ConfigError(
            f"landing directory {settings.landing_dir} does not exist "
            "(create it, point RETURNSYNC_LANDING or --landing at one, "
            "or run `returnsync simulate`)"
        )
    if settings.erp_pull:
        from pipelines.lib.erp import adapter_from_settings

        adapter_from_settings(settings)  # ErpConfigError (exit 2) when a setting is missing

    from pipelines.lib.summary import print_summary, snapshot
    from pipelines.lib.warehouse import initialize
    from pipelines.runner import new_log_file, run_main_job

    initialize(settings.db_path)  # waits while another process holds it (WarehouseLocked: 3)
    before = snapshot(settings)  # the summary says what this run changed
    run_id = str(uuid.uuid4())
    log_file = new_log_file(settings, run_id)
    if not quiet:
        click.echo(f"returnsync run: warehouse {settings.db_path}, log {log_file}", err=True)
    job_as_of = checked.isoformat() if checked is not None else None
    if quiet:  # dagster-dbt echoes every dbt log line on standard output: into the log file
        with (
            open(log_file, "a", encoding="utf-8", buffering=1) as log,
            contextlib.redirect_stdout(log),
        ):
            outcome = run_main_job(settings, job_as_of, True, log_file, run_id)
    else:
        outcome = run_main_job(settings, job_as_of, False, log_file, run_id)
    if not outcome:
        raise outcome.error()
    data = print_summary(settings, click.echo, before=before)
    if outcome.not_read:
        click.echo(f"not read ({len(outcome.not_read)} path(s): links are never followed):")
        for path, reason in outcome.not_read[:NOT_READ_SHOWN]:
            click.echo(f"  {path}: {reason}")
        if len(outcome.not_read) > NOT_READ_SHOWN:
            click.echo(f"  ... and {len(outcome.not_read) - NOT_READ_SHOWN} more (see {log_file})")
    if data["stale"]:
        from pipelines.lib.source_status import describe

        raise JobFailed(
            f"partial run: stale source(s) {describe(data['stale'])}; the rest was reconciled, "
            "nothing was planned or auto-approved"
        )
