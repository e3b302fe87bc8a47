"""`returnsync ingest`: land every source, build nothing (DESIGN §3; issue 23).

Runs the code location's `ingest_job` (sensors/ingest.py: the landing assets and their checks)
in this process through `pipelines.runner.run_main_job`, recorded in the same Dagster instance as
`returnsync run` (the UI of `make dev` shows it). `run` lands with the same assets.

Prints what the ingest changed: rows landed per raw table, files landed, new dead letters by
source and `reason_code` (pipelines/lib/cdc/reasons.py), new quarantined files, sources marked
stale, and the landing paths it did not read. Exit codes as `run`: 0 ok; 1 the job failed or a
source is stale; 2 usage or configuration; 3 the warehouse stayed locked.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import click

from pipelines.cli.options import landing_option, warehouse_option
from pipelines.errors import ConfigError, JobFailed

NOT_READ_SHOWN = 20


def _counts(db_path: Path) -> dict:
    """Raw rows per table, files landed, dead letters (source, position) and quarantined files."""
    from pipelines.lib.warehouse import connection

    out: dict = {"raw": {}, "files": 0, "letters": set(), "quarantined": 0}
    if not db_path.exists():
        return out
    with connection(db_path, read_only=True) as con:
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' order by 1"
        ).fetchall():
            out["raw"][name] = con.execute(f'select count(*) from raw."{name}"').fetchone()[0]
        out["files"] = con.execute("select count(*) from meta.files_landed").fetchone()[0]
        out["letters"] = set(
            con.execute("select source, position from meta.dead_letters").fetchall()
        )
        out["quarantined"] = con.execute("select count(*) from meta.quarantine").fetchone()[0]
    return out


def _new_letters(db_path: Path, before: set) -> dict[tuple[str, str], int]:
    """(source, reason_code) -> new dead letters since `before`."""
    from pipelines.lib.cdc.reasons import reason_code
    from pipelines.lib.warehouse import connection

    out: dict[tuple[str, str], int] = {}
    with connection(db_path, read_only=True) as con:
        for source, position, error in con.execute(
            "select source, position, error from meta.dead_letters"
        ).fetchall():
            if (source, position) not in before:
                key = (source, reason_code(error))
                out[key] = out.get(key, 0) + 1
    return out


@click.command()
@landing_option
@warehouse_option
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Only print the summary (the step log goes to the log file).",
)
def ingest(landing_dir: Path | None, db_path: Path | None, quiet: bool) -> None:
    """Land every source (CDC files or Kafka, file drops) into raw, with ledgers, dead letters
    and the boundary checks, then print what landed. Builds and reconciles nothing."""
    from pipelines.settings import Settings

    settings = Settings.from_env(landing_dir=landing_dir, db_path=db_path)
    if not settings.uses_kafka and not settings.landing_dir.is_dir():
        raise ConfigError(
            f"landing directory {settings.landing_dir} does not exist "
            "(create it, point RETURNSYNC_LANDING or --landing at one, "
            "or run `returnsync simulate`)"
        )
    from pipelines.lib.cdc.files import decoder_setting

    decoder = decoder_setting()  # a bad RETURNSYNC_CDC_DECODER fails before anything lands
    if settings.erp_pull:
        from pipelines.lib.erp import adapter_from_settings

        adapter_from_settings(settings)
    from pipelines.lib.warehouse import initialize
    from pipelines.runner import new_log_file, run_main_job
    from sensors.ingest import INGEST_JOB

    initialize(settings.db_path)  # waits while another process holds it (WarehouseLocked: 3)
    before = _counts(settings.db_path)
    run_id = str(uuid.uuid4())
    log_file = new_log_file(settings, run_id)
    if not quiet:
        click.echo(
            f"returnsync ingest: warehouse {settings.db_path}, CDC decoder {decoder}, "
            f"log {log_file}",
            err=True,
        )
    with contextlib.ExitStack() as stack:
        if quiet:
            log = stack.enter_context(open(log_file, "a", encoding="utf-8", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(log))
        outcome = run_main_job(settings, None, quiet, log_file, run_id, job_name=INGEST_JOB)
    if not outcome:
        raise outcome.error()
    after = _counts(settings.db_path)
    landed = {
        t: n - before["raw"].get(t, 0) for t, n in after["raw"].items() if n != before["raw"].get(t)
    }
    click.echo(f"ingest {outcome.run_id[:8]}: {sum(landed.values())} rows landed", nl=False)
    click.echo(f", {after['files'] - before['files']} file(s) landed")
    for table, n in sorted(landed.items()):
        click.echo(f"  raw.{table}: +{n}")
    letters = _new_letters(settings.db_path, before["letters"])
    click.echo(f"dead letters: +{sum(letters.values())}")
    for (source, code), n in sorted(letters.items()):
        click.echo(f"  {source} {code}: {n}")
    if after["quarantined"] != before["quarantined"]:
        click.echo(f"quarantined files: +{after['quarantined'] - before['quarantined']}")
    if outcome.not_read:
        click.echo(f"not read ({len(outcome.not_read)} path(s): links are never followed):")
        for path, reason in outcome.not_read[:NOT_READ_SHOWN]:
            click.echo(f"  {path}: {reason}")
    from pipelines.lib import source_status
    from pipelines.lib.warehouse import connection

    with connection(settings.db_path, read_only=True) as con:
        stale = source_status.stale_sources(con)
    if stale:
        raise JobFailed(f"partial ingest: stale source(s) {source_status.describe(stale)}")
