"""Sandboxed, read-only access to the published analyst database: queries and a small SQL shell.

DESIGN §12: `returnsync sql` and `returnsync shell` open the published copy (never the warehouse)
read-only, with DuckDB's external access disabled and its configuration locked. Two layers:

1. DuckDB itself (`SANDBOX_CONFIG`, then `lock_configuration`). Measured on DuckDB 2.0.1 (the
   hostile tests repeat each): `enable_external_access=false` refuses every file or network path —
   ATTACH (read-write or read-only, any file), COPY … TO/FROM, EXPORT/IMPORT DATABASE, the file
   readers (read_csv*, read_json*, read_ndjson*, read_parquet/parquet_scan, read_text, read_blob,
   glob, sniff_csv, parquet_metadata) and `from 'file.csv'` replacement scans, INSTALL and LOAD
   of anything not built in, CREATE SECRET — with a PermissionException. `lock_configuration`
   refuses every SET/RESET/PRAGMA that changes a setting (so none of the above can be switched
   back on). Autoinstall/autoload of extensions are off; Python replacement scans are off, so a
   query cannot read the calling process's variables.
2. Before anything runs, every statement's type is checked (`check`): only queries (SELECT, WITH,
   FROM, VALUES, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN, PRAGMA/CALL of read-only functions) are
   passed to DuckDB; the rest is refused with a one-line reason. This gives a clear message and
   refuses what layer 1 would allow but an analyst does not need (temporary tables, macros,
   `load json`, which is built in, transactions, prepared statements).

Every refusal and every failed query is a `QueryError` (a `ConfigError`: exit code 2, one line);
the shell prints it and goes on. Exports (`--output`) are written by Python (polars), never by
DuckDB, whose writers the sandbox blocks; CSV goes through the spreadsheet-safe writer.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import duckdb
import polars as pl

from pipelines.errors import ConfigError
from pipelines.lib.csvsafe import write_frame

FORMATS = ("table", "csv", "parquet")

SANDBOX_CONFIG: dict[str, object] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
}


class QueryError(ConfigError):
    """A statement the sandbox refuses, or a query DuckDB cannot run (exit 2, one line)."""


QUERIES_ONLY = "only queries run here (SELECT, WITH, FROM, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN)"
FILES_REFUSED = (
    "refused: the analyst sandbox cannot read or write files; "
    "export a result with `returnsync sql --output FILE` (CSV or Parquet)"
)
SETTINGS_REFUSED = "refused: settings are locked in the analyst sandbox"
ATTACH_REFUSED = (
    "refused: the analyst sandbox reads only the published copy; no database can be attached"
)
EXTENSIONS_REFUSED = "refused: extensions cannot be installed or loaded in the analyst sandbox"
READ_ONLY = f"refused: the analyst database is read-only; {QUERIES_ONLY}"

_ST = duckdb.StatementType
_ALLOWED = {_ST.SELECT, _ST.EXPLAIN, _ST.PRAGMA, _ST.CALL}
_REFUSALS = {
    _ST.ATTACH: ATTACH_REFUSED,
    _ST.DETACH: ATTACH_REFUSED,
    _ST.COPY: FILES_REFUSED,
    _ST.COPY_DATABASE: FILES_REFUSED,
    _ST.EXPORT: FILES_REFUSED,
    _ST.SET: SETTINGS_REFUSED,  # SET, RESET, USE, SET VARIABLE
    _ST.VARIABLE_SET: SETTINGS_REFUSED,
    _ST.LOAD: EXTENSIONS_REFUSED,  # LOAD and INSTALL
    _ST.EXTENSION: EXTENSIONS_REFUSED,
}
# comments and blanks before a statement's first word
_LEADING = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)


def open_published(path: Path) -> duckdb.DuckDBPyConnection:
    """The published copy at `path`, read-only, sandboxed and in UTC."""
    if not path.is_file():
        raise QueryError(
            f"no published marts at {path}: run `returnsync run` first "
            "(or point RETURNSYNC_ANALYST_DB / --db at them)"
        )
    try:
        con = duckdb.connect(str(path), read_only=True, config=dict(SANDBOX_CONFIG))
    except duckdb.Error as exc:
        raise QueryError(f"cannot open the published marts {path}: {one_line(exc)}") from exc
    try:
        con.execute("set timezone = 'UTC'")
        con.execute("set lock_configuration = true")  # from here on, no setting changes
    except BaseException:
        con.close()
        raise
    return con


def one_line(exc: BaseException) -> str:
    """DuckDB's message up to its blank line / `LINE n:` excerpt, on one line."""
    lines = []
    for line in str(exc).splitlines():
        if not line.strip() or line.startswith("LINE "):
            break
        lines.append(line.strip())
    return " ".join(lines) or type(exc).__name__


def check(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse the whole input unless every statement in it is a query (nothing has run yet)."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    if not statements:
        raise QueryError("nothing to run: the input holds no SQL statement")
    for statement in statements:
        word = _first_word(statement.query)
        try:
            kind = statement.type
        except ValueError as exc:  # a type the Python API does not know (UPDATE EXTENSIONS)
            known = word in ("update", "install", "load", "force")
            raise QueryError(EXTENSIONS_REFUSED if known else READ_ONLY) from exc
        if kind == _ST.PRAGMA and word != "pragma":  # IMPORT DATABASE, COPY FROM DATABASE
            raise QueryError(FILES_REFUSED if word in ("import", "copy") else READ_ONLY)
        if kind not in _ALLOWED:
            raise QueryError(_REFUSALS.get(kind, READ_ONLY))


def _first_word(sql: str) -> str:
    rest = sql[_LEADING.match(sql).end() :]
    match = re.match(r"[A-Za-z_]+", rest)
    return match.group(0).lower() if match else ""


def _refusal(exc: duckdb.Error) -> QueryError:
    if isinstance(exc, duckdb.PermissionException):
        return QueryError(FILES_REFUSED)
    message = one_line(exc)
    if "configuration has been locked" in message:
        return QueryError(SETTINGS_REFUSED)
    if "read-only mode" in message:
        return QueryError(READ_ONLY)
    return QueryError(message)


def fetch(con: duckdb.DuckDBPyConnection, query: str) -> pl.DataFrame | None:
    """Check and run `query` (one or more statements); the last statement's result, or None."""
    check(con, query)
    try:
        relation = con.sql(query)
        return None if relation is None else relation.pl()
    except duckdb.Error as exc:
        raise _refusal(exc) from exc


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
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise QueryError("--format parquet needs --output FILE")
    frame = fetch(con, query)
    if frame is None:  # a statement without a result
        return 0
    if output is not None:
        if fmt == "table":  # a file gets data, not a drawing: Parquet by its suffix, else CSV
            fmt = "parquet" if output.suffix.lower() == ".parquet" else "csv"
        _export(frame, fmt, output)
    elif fmt == "csv":
        write_frame(frame, out)
    else:
        with pl.Config(
            tbl_rows=max_rows,
            tbl_cols=-1,
            fmt_str_lengths=60,
            tbl_width_chars=200,
            tbl_hide_dataframe_shape=True,
        ):
            out.write(f"{frame}\n")
    return frame.height


def _export(frame: pl.DataFrame, fmt: str, output: Path) -> None:
    """Write the result by Python (DuckDB's writers are blocked), whole or not at all."""
    partial = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        if fmt == "parquet":
            frame.write_parquet(partial)
        else:
            write_frame(frame, partial)
        os.replace(partial, output)
    except OSError as exc:
        raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from exc
    except pl.exceptions.PolarsError as exc:
        raise QueryError(f"cannot write {output} as {fmt}: {one_line(exc)}") from exc
    finally:
        partial.unlink(missing_ok=True)


def shell(
    con: duckdb.DuckDBPyConnection,
    read: Callable[[str], str] = input,
    out: TextIO | None = None,
) -> None:
    """A minimal read-only SQL shell: statements end with `;`; `.tables` lists; `.quit` leaves.

    A refused or failing statement prints `error: <reason>` and the shell goes on; Ctrl-C drops
    the statement being typed, Ctrl-D leaves.
    """
    out = out or sys.stdout
    out.write("returnsync shell (read-only). End statements with ';'. .tables  .quit\n")
    buffer: list[str] = []
    while True:
        try:
            line = read("sql> " if not buffer else "...> ")
        except EOFError:
            out.write("\n")
            return
        except KeyboardInterrupt:
            out.write("\n")
            buffer.clear()
            continue
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit", "\\q"):
            return
        if not buffer and stripped == ".tables":
            line = (
                "select schema_name || '.' || table_name as table_name, estimated_size as rows "
                "from duckdb_tables() order by 1;"
            )
            stripped = line
        if not buffer and not stripped:
            continue
        buffer.append(line)
        if not stripped.endswith(";"):
            continue
        statement = "\n".join(buffer)
        buffer.clear()
        try:
            run_query(con, statement, out=out)
        except QueryError as exc:
            out.write(f"error: {exc}\n")
        except duckdb.Error as exc:  # not expected: fetch turns DuckDB's errors into QueryError
            out.write(f"error: {one_line(exc)}\n")
