"""`returnsync trace`: one return's path across the systems, and the overdue stages (DESIGN §14).

Reads the published analyst copy (`pipelines.lib.analyst.open_published`: read-only, sandboxed),
never the warehouse, so it neither blocks nor waits for a run. No personal data is shown.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.errors import ConfigError
from pipelines.lib.trace import BY, FORMATS


@click.command("trace")
@click.argument("needle", required=False, metavar="[RMA | ORDER | TRACKING]")
@click.option(
    "--by",
    type=click.Choice(BY),
    default=None,
    help="Match only as this (default: RMA, then order, then tracking number).",
)
@click.option(
    "--mismatch",
    "mismatch_id",
    metavar="ID",
    default=None,
    help="Show the records behind one mismatch (its mismatch_id, or a unique prefix).",
)
@click.option(
    "--overdue",
    is_flag=True,
    help="List the open stage transitions older than their SLA, most overdue first.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Published analyst database (default: RETURNSYNC_ANALYST_DB or data/analyst.duckdb).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format: a table per return, or json.",
)
def trace(
    needle: str | None,
    by: str | None,
    mismatch_id: str | None,
    overdue: bool,
    db_path: Path | None,
    fmt: str,
) -> None:
    """Trace a return by RMA, order or tracking number (tried in that order).

    Every stage (request, approval, WMS receipt and inspection, ERP stock posting, channel refund,
    ERP credit note, closing, the ERP documents push sent) with its time, system, source record
    (CDC table or file, key, raw position) and the gap since the previous event; stages still
    missing are shown with how long they are overdue against their SLA (settings seed,
    sla_<transition>_h). Several matching returns give one timeline each; none exits with code 2.

    Examples: returnsync trace LR-100001; returnsync trace '#1002' --by order;
    returnsync trace --overdue --format json
    """
    from pipelines.lib import trace as lib
    from pipelines.lib.analyst import open_published
    from pipelines.settings import Settings

    chosen = sum(x for x in (needle is not None, mismatch_id is not None, overdue))
    if chosen != 1:
        raise ConfigError(
            "give exactly one of: an RMA, order or tracking number; --mismatch ID; --overdue"
        )
    if by is not None and needle is None:
        raise ConfigError("--by goes with an RMA, order or tracking number")
    path = Settings.from_env(analyst_db_path=db_path).analyst_db_path
    con = open_published(path)
    try:
        if overdue:
            text = lib.render_overdue(lib.overdue(con), fmt)
        elif mismatch_id is not None:
            text = lib.render_trace(lib.trace_mismatch(con, mismatch_id), fmt)
        else:
            text = lib.render_trace(lib.trace(con, needle, by), fmt)
    finally:
        con.close()
    click.echo(text, nl=False)
