"""`returnsync report`: the reconciliation mismatches on standard output (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path

import click
import duckdb

from pipelines.lib.recon.lifecycle import RULES, STATUSES, list_mismatches
from pipelines.lib.recon.report import FORMATS, render


@click.command("report")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB warehouse to read (default: RETURNSYNC_DB, or data/returnsync.duckdb).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="Output format: csv, md (a Markdown table) or json.",
)
@click.option(
    "--rule",
    type=click.Choice(RULES),
    default=None,
    help="Only mismatches of this rule (default: all rules).",
)
@click.option(
    "--status",
    type=click.Choice([*STATUSES, "all"]),
    default="open",
    show_default=True,
    help="Lifecycle status to list; 'all' includes resolved and acknowledged history.",
)
def report(db_path: Path | None, fmt: str, rule: str | None, status: str) -> None:
    """Print reconciliation mismatches (default: the open ones, as CSV).

    Reads the warehouse read-only, so it can run while a reconciliation writes. Worst first:
    severity, then the amount at risk, then the quantity. No customer personal data is shown.
    """
    if db_path is None:
        from pipelines.settings import Settings

        db_path = Settings.from_env().db_path
    if not db_path.exists():
        raise click.ClickException(
            f"no warehouse at {db_path}: run `returnsync run` first (or pass --db)"
        )
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        raise click.ClickException(f"cannot open the warehouse {db_path}: {exc}") from exc
    try:
        con.execute("set timezone = 'UTC'")
        rows = list_mismatches(con, status=status, rule=rule)
    except LookupError as exc:
        raise click.ClickException(f"{exc} (warehouse {db_path})") from exc
    finally:
        con.close()
    click.echo(render(rows, fmt), nl=False)
