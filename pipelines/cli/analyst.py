"""`returnsync sql` and `returnsync shell`: read-only queries on the published marts."""

import contextlib
from pathlib import Path

import click
import duckdb

from pipelines.lib.analyst import FORMATS, open_published, run_query
from pipelines.lib.analyst import shell as run_shell
from pipelines.settings import Settings

_db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Published analyst database (default: RETURNSYNC_ANALYST_DB or data/analyst.duckdb).",
)


def _connect(db_path: Path | None):
    settings = Settings.from_env(analyst_db_path=db_path)
    try:
        return open_published(settings.analyst_db_path)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("query")
@_db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Print a table or CSV, or write Parquet (needs --output).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to this file instead of standard output.",
)
@click.option("--max-rows", default=50, show_default=True, help="Rows shown in table format.")
def sql(query: str, db_path: Path | None, fmt: str, output: Path | None, max_rows: int) -> None:
    """Run QUERY on the published marts (read-only; never blocks or is blocked by a run).

    Example: returnsync sql "select channel, count(*) from marts.returns group by 1"
    """
    con = _connect(db_path)
    try:
        rows = run_query(con, query, fmt=fmt, output=output, max_rows=max_rows)
    except (ValueError, duckdb.Error) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        con.close()
    if output is not None:
        click.echo(f"{rows} rows written to {output}", err=True)


@click.command()
@_db_option
def shell(db_path: Path | None) -> None:
    """An interactive, read-only SQL shell on the published marts.

    End each statement with ';'. `.tables` lists the tables, `.quit` (or Ctrl-D) leaves.
    """
    con = _connect(db_path)
    try:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history when available)
        run_shell(con)
    finally:
        con.close()
