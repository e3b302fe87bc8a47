"""Read-only access to the published analyst database: queries and a small SQL shell."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import duckdb
import polars as pl

FORMATS = ("table", "csv", "parquet")


def open_published(path: Path) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise FileNotFoundError(
            f"no published marts at {path}: run `returnsync run` first "
            "(or point RETURNSYNC_ANALYST_DB / --db at them)"
        )
    con = duckdb.connect(str(path), read_only=True)
    con.execute("set timezone = 'UTC'")
    return con


def run_query(
    con: duckdb.DuckDBPyConnection,
    query: str,
    fmt: str = "table",
    output: Path | None = None,
    out: TextIO | None = None,
    max_rows: int = 50,
) -> int:
    """Run one query; print it as a table or CSV, or write CSV/Parquet to `output`. Returns rows."""
    out = out or sys.stdout
    relation = con.sql(query)
    if relation is None:  # a statement without a result (e.g. SET)
        return 0
    if fmt == "parquet":
        if output is None:
            raise ValueError("--format parquet needs --output FILE")
        relation.write_parquet(str(output))
        return con.execute(f"select count(*) from read_parquet('{output}')").fetchone()[0]
    frame = relation.pl()
    if fmt == "csv":
        if output is not None:
            frame.write_csv(output)
        else:
            out.write(frame.write_csv())
    elif fmt == "table":
        with pl.Config(
            tbl_rows=max_rows,
            tbl_cols=-1,
            fmt_str_lengths=60,
            tbl_width_chars=200,
            tbl_hide_dataframe_shape=True,
        ):
            out.write(f"{frame}\n")
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return frame.height


def shell(
    con: duckdb.DuckDBPyConnection,
    read: Callable[[str], str] = input,
    out: TextIO | None = None,
) -> None:
    """A minimal read-only SQL shell: statements end with `;`; `.tables` lists; `.quit` leaves."""
    out = out or sys.stdout
    out.write("returnsync shell (read-only). End statements with ';'. .tables  .quit\n")
    buffer: list[str] = []
    while True:
        try:
            line = read("sql> " if not buffer else "...> ")
        except EOFError:
            out.write("\n")
            return
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit", "\\q"):
            return
        if not buffer and stripped == ".tables":
            line = (
                "select schema_name || '.' || table_name as table_name, estimated_size as rows "
                "from duckdb_tables() order by 1;"
            )
            stripped = line
        buffer.append(line)
        if not stripped.endswith(";"):
            continue
        statement = "\n".join(buffer)
        buffer.clear()
        try:
            run_query(con, statement, out=out)
        except duckdb.Error as exc:
            out.write(f"error: {exc}\n")
