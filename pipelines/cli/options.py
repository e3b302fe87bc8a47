"""Options shared by the commands that land and build (`run`, `ingest`, `watch`)."""

from __future__ import annotations

from pathlib import Path

import click

landing_option = click.option(
    "--landing",
    "landing_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Landing directory of file drops (default: RETURNSYNC_LANDING or data/landing).",
)

warehouse_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="DuckDB warehouse file (default: RETURNSYNC_DB or data/returnsync.duckdb).",
)
