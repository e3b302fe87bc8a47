"""`returnsync report`: the reconciliation mismatches on standard output (DESIGN §5, §11)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import duckdb

from pipelines.errors import ConfigError
from pipelines.lib.recon.lifecycle import RULES, STATUSES
from pipelines.lib.recon.report import FORMATS, build_report, render
from pipelines.lib.source_status import one_line


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
    help=(
        "Output format: csv (the rows), md (a Markdown table and the totals) or json "
        "(rows, totals_by_currency and, when rates exist, totals_company)."
    ),
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

    One row per mismatch, worst first, each with its case (one per return), the currency of its
    amounts, the money and goods at risk of its case (each on one row only, so a column's sum
    never counts money twice), a company-currency figure where rates exist, what to do, the
    adjustment planned for it and who acknowledged it. Totals are per currency, never summed
    across currencies. No customer personal data is shown.

    Reads the warehouse read-only; while a run holds it, waits up to RETURNSYNC_LOCK_WAIT_S.
    A stale source (its last landing failed) is named in a warning on standard error.
    """
    from pipelines.lib.source_status import stale_sources
    from pipelines.lib.warehouse import connect

    if db_path is None:
        from pipelines.settings import Settings

        db_path = Settings.from_env().db_path
    if not db_path.exists():
        raise ConfigError(f"no warehouse at {db_path}: run `returnsync run` first (or pass --db)")
    try:
        con = connect(db_path, read_only=True)  # waits while a run holds it (exit 3 after)
    except duckdb.Error as exc:  # not a DuckDB file, or a newer format
        raise ConfigError(f"cannot open the warehouse {db_path}: {one_line(str(exc))}") from None
    try:
        report_ = build_report(con, status=status, rule=rule)
        stale = stale_sources(con)
        # issue 24 (H-warm): how current each source is; read only where it is shown (it reads
        # the raw tables' positions, a cost that grows with what has landed)
        fresh = _freshness(con) if fmt == "md" or sys.stderr.isatty() else []
    except LookupError as exc:
        raise ConfigError(f"{exc} (warehouse {db_path})") from exc
    finally:
        con.close()
    for source in stale:  # the report is partial: say so, outside the data itself
        click.echo(
            f"returnsync: warning: source {source.source} is stale since "
            f"{source.run_at:%Y-%m-%d %H:%M:%S} UTC ({source.error}); "
            "its mismatches may be missing or phantoms",
            err=True,
        )
    _freshness_header(fresh, fmt)
    click.echo(render(report_, fmt), nl=False)
    if fmt == "md" and fresh:  # the Markdown report is for people: a section of its own
        click.echo("\n**Freshness** (per source: rows landed, the last one's time and position)\n")
        click.echo("\n".join(f"- {line.removeprefix('freshness: ')}" for line in fresh))


def _freshness(con) -> list[str]:
    """Per source: rows landed, when the last landed and its position (issue 24, H-warm)."""
    from pipelines.lib.publish import freshness, freshness_lines

    return freshness_lines(freshness(con))


def _freshness_header(lines: list[str], fmt: str) -> None:
    """At a terminal, the freshness lines head the report on standard error (CSV and JSON on
    standard output stay data only; piped or captured, only the warnings are there)."""
    if fmt != "md" and sys.stderr.isatty():
        for line in lines:
            click.echo(f"returnsync: {line}", err=True)
