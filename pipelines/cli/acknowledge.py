"""`returnsync acknowledge | unacknowledge`: a person marks open mismatches as seen, with a note
(DESIGN §5 lifecycle, §11), or takes that back.

Repeating either is harmless: an id already in the asked state exits 0 and is named as such. An
id that is resolved or unknown changes nothing and makes the command exit 1, after the others
were done.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.errors import ConfigError, JobFailed

DB_OPTION = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB warehouse (default: RETURNSYNC_DB, or data/returnsync.duckdb).",
)


def _open(db_path: Path | None):
    """A read-write connection to the warehouse with recon.mismatches (ConfigError otherwise)."""
    import duckdb

    from pipelines.lib.warehouse import connect, table_exists

    if db_path is None:
        from pipelines.settings import Settings

        db_path = Settings.from_env().db_path
    if not db_path.exists():
        raise ConfigError(f"no warehouse at {db_path}: run `returnsync run` first")
    try:
        con = connect(db_path)  # waits while a run holds it (exit 3 after)
    except duckdb.Error as exc:  # not a DuckDB file, or a newer format
        message = " ".join(str(exc).split())
        raise ConfigError(f"cannot open the warehouse {db_path}: {message}") from None
    if not table_exists(con, "recon", "mismatches"):
        con.close()
        raise ConfigError(f"recon.mismatches is missing in {db_path}: run the reconciliation first")
    return con


def _report(outcome, done: str, already: str, who: str) -> None:
    """One line per kind of outcome, and where the UI shows a change; exit 1 when an id was
    resolved or unknown."""
    if outcome.changed:
        click.echo(f"{done} {len(outcome.changed)} mismatch(es) by {who}")
    if outcome.noted:
        click.echo(
            f"already acknowledged, note replaced: {', '.join(outcome.noted)} "
            "(who and when stay the first acknowledgement's)"
        )
    if outcome.unchanged:
        click.echo(f"{already}: {', '.join(outcome.unchanged)} (nothing to do)")
    if not (outcome.changed or outcome.noted or outcome.unchanged):
        click.echo(f"{done} 0 mismatch(es)")
    if outcome.changed or outcome.noted:
        click.echo(
            "the Dagster UI shows it with the next reconciliation (`returnsync run`, or a run "
            "in `make dev`)"
        )
    problems = []
    if outcome.resolved:
        problems.append(f"resolved (nothing to change): {', '.join(outcome.resolved)}")
    if outcome.unknown:
        problems.append(f"unknown mismatch id(s): {', '.join(outcome.unknown)}")
    if problems:
        raise JobFailed("; ".join(problems))


@click.command("acknowledge")
@click.argument("mismatch_ids", nargs=-1, required=True, metavar="MISMATCH_ID...")
@click.option(
    "--by", "by", required=True, help="Who acknowledges (recorded with the time in the history)."
)
@click.option(
    "--note",
    default=None,
    help="Why (shown in the report as acknowledgement_note; every note is kept).",
)
@DB_OPTION
def acknowledge(
    mismatch_ids: tuple[str, ...], by: str, note: str | None, db_path: Path | None
) -> None:
    """Acknowledge open mismatches by id (from `returnsync report`).

    An acknowledged mismatch stays acknowledged across reruns while it keeps appearing, no longer
    fails its Dagster check, and is resolved like any other once the data is corrected.
    Acknowledging one again exits 0; with a different --note it replaces the note.
    """
    from pipelines.lib.recon.lifecycle import set_acknowledged

    if not by.strip():
        raise ConfigError("--by is empty: say who acknowledges")
    if note is not None and not note.strip():
        raise ConfigError("--note is empty: leave it out, or say why")
    con = _open(db_path)
    try:
        outcome = set_acknowledged(con, mismatch_ids, by=by, note=note)
    finally:
        con.close()
    _report(outcome, "acknowledged", "already acknowledged", by.strip())


@click.command("unacknowledge")
@click.argument("mismatch_ids", nargs=-1, required=True, metavar="MISMATCH_ID...")
@click.option("--by", "by", required=True, help="Who takes the acknowledgement back (recorded).")
@DB_OPTION
def unacknowledge(mismatch_ids: tuple[str, ...], by: str, db_path: Path | None) -> None:
    """Take acknowledgements back: the mismatches are open again and fail their checks.

    The history records who did it and when; the notes given stay in
    recon.acknowledgement_notes. Unacknowledging an open mismatch exits 0.
    """
    from pipelines.lib.recon.lifecycle import unacknowledge as do_unacknowledge

    if not by.strip():
        raise ConfigError("--by is empty: say who unacknowledges")
    con = _open(db_path)
    try:
        outcome = do_unacknowledge(con, mismatch_ids, by=by)
    finally:
        con.close()
    _report(outcome, "unacknowledged", "not acknowledged", by.strip())
