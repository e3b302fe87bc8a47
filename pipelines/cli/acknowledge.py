"""`returnsync acknowledge`: a person marks open mismatches as seen (DESIGN §5 lifecycle)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("acknowledge")
@click.argument("mismatch_ids", nargs=-1, required=True, metavar="MISMATCH_ID...")
@click.option(
    "--by", "by", required=True, help="Who acknowledges (recorded with the time in the history)."
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB warehouse (default: RETURNSYNC_DB, or data/returnsync.duckdb).",
)
def acknowledge(mismatch_ids: tuple[str, ...], by: str, db_path: Path | None) -> None:
    """Acknowledge open mismatches by id (from `returnsync report`).

    An acknowledged mismatch stays acknowledged across reruns while it keeps appearing, no longer
    fails its Dagster check, and is resolved like any other once the data is corrected.
    """
    import duckdb

    from pipelines.errors import ConfigError
    from pipelines.lib.recon.lifecycle import acknowledge as ack
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
    try:
        if not table_exists(con, "recon", "mismatches"):
            raise ConfigError(
                f"recon.mismatches is missing in {db_path}: run the reconciliation first"
            )
        missing = [m for m in mismatch_ids if not ack(con, m, by=by)]
    finally:
        con.close()
    done = len(mismatch_ids) - len(missing)
    click.echo(f"acknowledged {done} mismatch(es) by {by.strip()}")
    if missing:
        raise click.ClickException(f"not open, or unknown: {', '.join(missing)}")
