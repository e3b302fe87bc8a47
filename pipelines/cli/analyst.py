"""`returnsync sql` and `returnsync shell`: sandboxed, read-only queries on the published marts.

Both open the published copy through `pipelines.lib.analyst.open_published` (external access
off, configuration locked, DESIGN §12); a refused statement or a failing query is one line on
stderr and exit code 2 (`sql`: a `QueryError`, printed by the CLI's error handler), or an `error:`
line after which the shell goes on.
"""

import contextlib
from pathlib import Path

import click

from pipelines.lib.analyst import FORMATS, QueryError, open_published, run_query
from pipelines.lib.analyst import shell as run_shell
from pipelines.settings import Settings

_db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Published analyst database (default: RETURNSYNC_ANALYST_DB or data/analyst.duckdb).",
)


def _settings(db_path: Path | None) -> Settings:
    return Settings.from_env(analyst_db_path=db_path)


def _check_output(output: Path, settings: Settings) -> None:
    """An export never replaces a database file of returnsync (or its WAL)."""
    target = output.resolve()
    for db in (settings.db_path, settings.analyst_db_path):
        protected = db.resolve()
        if target in (protected, protected.with_name(protected.name + ".wal")):
            raise QueryError(f"refused: --output {output} is a returnsync database")


@click.command()
@click.argument("query")
@_db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Print a table or CSV, or write Parquet (needs --output). CSV is spreadsheet-safe: "
    "text starting with = + - @ (not a number) gets a leading '.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to this file instead of standard output (with --format table: "
    "Parquet for a .parquet name, else CSV).",
)
@click.option("--max-rows", default=50, show_default=True, help="Rows shown in table format.")
def sql(query: str, db_path: Path | None, fmt: str, output: Path | None, max_rows: int) -> None:
    """Run QUERY on the published marts (read-only; never blocks or is blocked by a run).

    Only queries run: no ATTACH, COPY, file readers, INSTALL/LOAD or SET (exit code 2).

    Example: returnsync sql "select channel, count(*) from marts.returns group by 1"
    """
    settings = _settings(db_path)
    if output is not None:
        _check_output(output, settings)
    con = open_published(settings.analyst_db_path)
    try:
        rows = run_query(con, query, fmt=fmt, output=output, max_rows=max_rows)
    finally:
        con.close()
    if output is not None:
        click.echo(f"{rows} rows written to {output}", err=True)


@click.command()
@_db_option
def shell(db_path: Path | None) -> None:
    """An interactive, read-only SQL shell on the published marts.

    End each statement with ';'. `.tables` lists the tables, `.quit` (or Ctrl-D) leaves.
    Only queries run; a refused statement prints an error and the shell goes on.
    """
    con = open_published(_settings(db_path).analyst_db_path)
    try:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history when available)
        run_shell(con)
    finally:
        con.close()
