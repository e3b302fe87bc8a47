"""`returnsync push`: write-back outside Dagster (DESIGN §6, §7).

(`approve` and `reject`, a person's decision on adjustments, are in pipelines/cli/queues.py.)
`push` sends approved, unsent adjustments to the ERP, each exactly once (the ERP document carries
the adjustment's idempotency key, looked up before anything is created). ERP credentials come
only from RETURNSYNC_ERP_URL / _DATABASE / _USER / _PASSWORD and are never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.errors import ConfigError, ErpUnavailable, JobFailed

DB_OPTION = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB warehouse (default: RETURNSYNC_DB, or data/returnsync.duckdb).",
)


def _settings(db_path: Path | None):
    from pipelines.settings import Settings

    return Settings.from_env(db_path=db_path)


def _open(db_path: Path):
    import duckdb

    from pipelines.lib.warehouse import connect

    if not db_path.exists():
        raise ConfigError(f"no warehouse at {db_path}: run `returnsync run` first")
    try:
        return connect(db_path)  # waits while a run holds it (exit 3 after)
    except duckdb.Error as exc:  # not a DuckDB file, or a newer format
        message = " ".join(str(exc).split())
        raise ConfigError(f"cannot open the warehouse {db_path}: {message}") from None


def _echo_waiting(db_path: Path) -> None:
    """What waits for a person: planned adjustments (to approve or reject) and open exceptions."""
    from pipelines.lib.warehouse import connection
    from pipelines.lib.writeback import list_adjustments, list_open_exceptions

    if not db_path.exists():
        return
    with connection(db_path, read_only=True) as con:
        waiting = list_adjustments(con, "planned")
        exceptions = list_open_exceptions(con)
    for row in waiting:
        what = (
            f"{row['amount']} {row['currency'] or ''}".rstrip()
            if row["action"] in ("post_draft_credit_note", "create_credit_note")
            else f"{row['quantity']} units"
        )
        click.echo(
            f"waiting for approval: {row['adjustment_id']} {row['rule']} RMA {row['rma_number']}: "
            f"{row['action']} {what} ({row['decided_reason']})"
        )
    for row in exceptions:
        ref = f" {row['adjustment_id']}" if row["adjustment_id"] else ""
        click.echo(
            f"exception queue:{ref} {row['rule']} RMA {row['rma_number']}: {row['reason']}"
            + (f" ({row['message']})" if row["message"] else "")
        )


def _dry_run(settings, selected: list[str] | None) -> None:
    """What would be sent, each adjustment checked against the ERP when one is configured
    (read-only: product, party, address, location, accounts, an open fiscal period)."""
    from pipelines.lib.erp import (
        ErpAuthError,
        ErpConfigError,
        ErpTransientError,
        adapter_from_settings,
    )
    from pipelines.lib.writeback import push_adjustments

    adapter, note = None, None
    try:
        adapter = adapter_from_settings(settings)
        adapter.check()
    except (ErpConfigError, ErpAuthError, ErpTransientError) as exc:
        adapter, message = None, str(exc)
        if settings.erp_password:
            message = message.replace(settings.erp_password, "***")
        note = f"not checked against the ERP: {message}"
    summary = push_adjustments(
        settings.db_path, adapter, dry_run=True, only=selected, secrets=(settings.erp_password,)
    )
    failing = [r for r in summary.results if r.outcome == "would_fail"]
    for result in summary.results:
        verb = "would fail" if result.outcome == "would_fail" else "would send"
        click.echo(f"{verb} {result.message}")
    if note:
        click.echo(note)
    click.echo(
        f"dry run: {len(summary.results) - len(failing)} adjustment(s) would be sent, "
        f"{len(failing)} would fail in the ERP; nothing sent"
    )
    _echo_waiting(settings.db_path)


@click.command("push")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be sent and check each adjustment against the ERP (product, party, "
    "address, accounts); send nothing, write nothing.",
)
@DB_OPTION
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="ERP calls per adjustment when the ERP is unreachable or busy (transient errors).",
)
@click.option(
    "--backoff",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds before the first retry; doubled after each (at most 30 s).",
)
@click.option(
    "--id",
    "only",
    multiple=True,
    help="Push only this adjustment (repeatable); default: every approved, unsent one.",
)
def push(
    dry_run: bool, db_path: Path | None, max_attempts: int, backoff: float, only: tuple[str, ...]
) -> None:
    """Send approved, unsent adjustments to the ERP (credit notes, stock postings).

    Each ERP document carries the adjustment's idempotency key and is looked up before it is
    created, so pushing again, or after a crash, never creates a second one. Transient ERP errors
    are retried with backoff; refused documents go to the exception queue with the ERP's message.
    The ERP is reached and logged in to first: when it cannot be, no adjustment changes state.
    Exit status: 0 when the push went through, 2 for missing or malformed ERP settings, 4 when
    the ERP is unreachable or refuses the credentials.
    """
    from tqdm import tqdm

    from pipelines.lib.erp import adapter_from_settings
    from pipelines.lib.writeback import RetryPolicy, push_adjustments

    settings = _settings(db_path)
    policy = RetryPolicy(max_attempts=max_attempts, backoff_seconds=backoff)
    selected = list(only) or None
    if dry_run:
        _dry_run(settings, selected)
        return
    if not settings.db_path.exists():
        raise ConfigError(f"no warehouse at {settings.db_path}: run `returnsync run` first")
    adapter = adapter_from_settings(settings)  # ErpConfigError (exit 2): a setting missing
    bar = tqdm(desc="push", unit="adj", file=sys.stderr, disable=None)

    def progress(adj, result) -> None:
        bar.update(1)
        document = result.erp_document or {}
        where = f"{document.get('model')} {document.get('number') or document.get('id')}"
        text = {
            "created": f"created {where}",
            "found": f"already in the ERP: {where}",
            "exception": f"exception queue: {result.message}",
            "stopped": f"exception queue: {result.message}",
            "obsolete": "rejected: its mismatch is no longer open and the ERP has no document",
        }.get(result.outcome, result.message or result.outcome)
        tqdm.write(f"{adj.adjustment_id} {adj.action}: {text}", file=sys.stdout)

    try:
        summary = push_adjustments(
            settings.db_path,
            adapter,
            policy=policy,
            only=selected,
            secrets=(settings.erp_password,),
            progress=progress,
        )
    finally:
        bar.close()
    if summary.results:  # something was tried (else the ERP was not reached: nothing changed)
        click.echo(
            f"pushed: {summary.created} created, {summary.found} already in the ERP, "
            f"{summary.exceptions} to the exception queue, {summary.obsolete} obsolete, "
            f"{summary.remaining} left"
        )
    elif not summary.stopped_reason:
        click.echo("pushed: nothing approved to send")
    if summary.auth_failed or summary.unreachable:
        untouched = "" if summary.results else "; no adjustment changed"
        raise ErpUnavailable(f"push stopped: {summary.stopped_reason}{untouched}")
    if summary.stopped_reason:
        raise JobFailed(f"push stopped: {summary.stopped_reason}")
