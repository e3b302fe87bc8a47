"""Hostile SQL against the analyst sandbox (DESIGN §12): every case, its exact outcome.

Each statement is tried through `returnsync sql` (exit code 2 and one line), through the shell
function with scripted input, and all of them through the real `returnsync shell` reading stdin.
After each, nothing changed: the warehouse and the published copy have the same bytes and mtime,
and no file was written anywhere in the directory the statements point at.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib import analyst
from pipelines.lib.analyst import (
    ATTACH_REFUSED,
    EXTENSIONS_REFUSED,
    FILES_REFUSED,
    READ_ONLY,
    SETTINGS_REFUSED,
    open_published,
    shell,
)
from pipelines.lib.publish import publish

EMAIL = "jane.doe@example.com"
RETURNSYNC = str(Path(sys.executable).with_name("returnsync"))  # the installed command

# (statement, the whole error message the analyst sees)
CASES: list[tuple[str, str]] = [
    # ATTACH, read-write or read-only, of the warehouse or any other file
    ("attach 'data/returnsync.duckdb' as w (read_only false)", ATTACH_REFUSED),
    ("attach 'data/returnsync.duckdb' as w (read_only)", ATTACH_REFUSED),
    ("attach 'data/returnsync.duckdb' as w (read_only false); "
     "update w.recon.mismatches set status = 'resolved'", ATTACH_REFUSED),
    ("attach 'data/returnsync.duckdb' as w (read_only); "
     "select payload from w.raw.returns_saas_webhooks", ATTACH_REFUSED),
    ("attach 'elsewhere.duckdb' as e", ATTACH_REFUSED),
    ("attach ':memory:' as m", ATTACH_REFUSED),
    ("attach database 'secret.csv' as s (type sqlite)", ATTACH_REFUSED),
    ("select 1; attach 'data/returnsync.duckdb' as w", ATTACH_REFUSED),
    ("detach analyst", ATTACH_REFUSED),
    # COPY ... TO / FROM, EXPORT / IMPORT DATABASE
    ("copy (select 1) to 'data/returnsync.duckdb'", FILES_REFUSED),
    ("copy (select 1) to 'data/returnsync.duckdb' (format csv, overwrite true)", FILES_REFUSED),
    ("copy recon.mismatches to 'out.csv'", FILES_REFUSED),
    ("copy (select * from marts.returns) to 'out.parquet' (format parquet)", FILES_REFUSED),
    ("copy marts.returns from 'secret.csv'", FILES_REFUSED),
    ("copy from database analyst to w", FILES_REFUSED),
    ("export database 'dump'", FILES_REFUSED),
    ("export database 'dump' (format parquet)", FILES_REFUSED),
    ("import database 'dump'", FILES_REFUSED),
    ("/* quiet */ import database 'dump'", FILES_REFUSED),
    # file readers and replacement scans
    ("select * from read_csv('/etc/passwd')", FILES_REFUSED),
    ("select * from read_csv('secret.csv')", FILES_REFUSED),
    ("select * from read_csv(['secret.csv', 'secret.csv'])", FILES_REFUSED),
    ("select * from read_csv_auto('secret.csv')", FILES_REFUSED),
    ("select * from read_json('secret.json')", FILES_REFUSED),
    ("select * from read_json_auto('secret.json')", FILES_REFUSED),
    ("select * from read_json_objects('secret.json')", FILES_REFUSED),
    ("select * from read_ndjson('secret.json')", FILES_REFUSED),
    ("select * from read_ndjson_auto('secret.json')", FILES_REFUSED),
    ("select * from read_ndjson_objects('secret.json')", FILES_REFUSED),
    ("select * from read_parquet('secret.parquet')", FILES_REFUSED),
    ("select * from parquet_scan('secret.parquet')", FILES_REFUSED),
    ("select * from parquet_metadata('secret.parquet')", FILES_REFUSED),
    ("select * from parquet_schema('secret.parquet')", FILES_REFUSED),
    ("select * from read_text('/etc/passwd')", FILES_REFUSED),
    ("select * from read_blob('data/returnsync.duckdb')", FILES_REFUSED),
    ("select * from glob('*')", FILES_REFUSED),
    ("select * from glob('/etc/*')", FILES_REFUSED),
    ("select * from sniff_csv('secret.csv')", FILES_REFUSED),
    ("from 'secret.csv'", FILES_REFUSED),
    ("select * from 'secret.parquet'", FILES_REFUSED),
    ("select * from 'secret.json'", FILES_REFUSED),
    ("with x as (select * from read_csv('secret.csv')) select count(*) from x", FILES_REFUSED),
    ("select (select count(*) from read_text('/etc/passwd')) as n", FILES_REFUSED),
    # a path without a known suffix is not scanned at all: just no such table
    ("from '/etc/passwd'", "Catalog Error: Table with name /etc/passwd does not exist!"),
    # INSTALL / LOAD
    ("install httpfs", EXTENSIONS_REFUSED),
    ("force install httpfs", EXTENSIONS_REFUSED),
    ("install sqlite from core_nightly", EXTENSIONS_REFUSED),
    ("load httpfs", EXTENSIONS_REFUSED),
    ("load json", EXTENSIONS_REFUSED),
    ("load 'secret.duckdb_extension'", EXTENSIONS_REFUSED),
    ("update extensions", EXTENSIONS_REFUSED),
    # SET / RESET that would undo the sandbox (and any other setting)
    ("set enable_external_access = true", SETTINGS_REFUSED),
    ("set global enable_external_access = true", SETTINGS_REFUSED),
    ("reset enable_external_access", SETTINGS_REFUSED),
    ("set lock_configuration = false", SETTINGS_REFUSED),
    ("reset lock_configuration", SETTINGS_REFUSED),
    ("set autoinstall_known_extensions = true", SETTINGS_REFUSED),
    ("set autoload_known_extensions = true", SETTINGS_REFUSED),
    ("set allow_unsigned_extensions = true", SETTINGS_REFUSED),
    ("set allowed_paths = ['secret.csv']", SETTINGS_REFUSED),
    ("set allowed_directories = ['/']", SETTINGS_REFUSED),
    ("set python_enable_replacements = true", SETTINGS_REFUSED),
    ("set temp_directory = 'spill'", SETTINGS_REFUSED),
    ("set variable x = 1", SETTINGS_REFUSED),
    ("use memory", SETTINGS_REFUSED),
    ("pragma enable_profiling", SETTINGS_REFUSED),
    ("pragma threads = 1", SETTINGS_REFUSED),
    # writes of any kind
    ("update recon.mismatches set status = 'resolved'", READ_ONLY),
    ("delete from marts.returns", READ_ONLY),
    ("insert into recon.mismatches select * from recon.mismatches", READ_ONLY),
    ("create table marts.x as select 1", READ_ONLY),
    ("create temp table t as select 1", READ_ONLY),
    ("create or replace macro leak() as 1", READ_ONLY),
    ("create secret (type s3, key_id 'a', secret 'b')", READ_ONLY),
    ("drop table marts.returns", READ_ONLY),
    ("alter table marts.returns add column x int", READ_ONLY),
    ("begin transaction", READ_ONLY),
    ("prepare p as select 1", READ_ONLY),
    ("vacuum", READ_ONLY),
]  # fmt: skip

IDS = [f"{i:02d}-{q.split()[0].lower()}" for i, (q, _) in enumerate(CASES)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A data directory with a warehouse holding customers' e-mails in `raw`, its published
    copy, and readable files next to them (built once: every test checks nothing changed)."""
    root = tmp_path_factory.mktemp("sandbox")
    data = root / "data"
    data.mkdir()
    warehouse = data / "returnsync.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute(f"""
        create schema raw; create schema marts; create schema recon; create schema meta;
        create table raw.returns_saas_webhooks as
            select '{{"customer": {{"email": "{EMAIL}"}}}}' as payload;
        create table marts.returns as select 'k1' as return_key, 'shopify' as channel;
        create table recon.mismatches as select 'm1' as mismatch_id, 'open' as status;
        create table meta.dead_letters as select 'x' as raw;
        copy (select '{EMAIL}' as email) to '{root / "secret.csv"}';
        copy (select '{EMAIL}' as email) to '{root / "secret.json"}';
        copy (select '{EMAIL}' as email) to '{root / "secret.parquet"}';
    """)
    con.close()
    publish(warehouse, data / "analyst.duckdb")
    return root


@pytest.fixture
def place(built, monkeypatch) -> Path:
    """`built` as the working directory and the data directory of the commands."""
    monkeypatch.chdir(built)
    monkeypatch.setenv("RETURNSYNC_DATA_DIR", str(built / "data"))
    monkeypatch.delenv("RETURNSYNC_DB", raising=False)
    monkeypatch.delenv("RETURNSYNC_ANALYST_DB", raising=False)
    return built


def the_error(output: str) -> str:
    """The message of a command's one-line error (`Error: ...` from click, or the CLI's own
    `returnsync: error: ...`); fails on anything else, a traceback included."""
    match = re.fullmatch(r"(?:Error|returnsync: error): (.*)\n", output)
    assert match, output
    return match.group(1)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root` (and the DuckDB home): content hash and mtime."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path.relative_to(root))] = (digest, path.stat().st_mtime_ns)
    return state


@pytest.mark.parametrize(("statement", "message"), CASES, ids=IDS)
def test_sql_refuses(place, statement, message):
    before = snapshot(place)
    result = CliRunner().invoke(main, ["sql", statement])
    assert result.exit_code == 2, result.output
    error = the_error(result.output)
    # a refusal is exactly our line; a DuckDB error keeps its own wording (the catalog case)
    assert error == message or (not message.startswith("refused") and error.startswith(message))
    assert EMAIL not in result.output
    assert snapshot(place) == before


@pytest.mark.parametrize(("statement", "message"), CASES, ids=IDS)
def test_shell_function_refuses_and_goes_on(place, statement, message):
    before = snapshot(place)
    script = iter([statement + ";", "select count(*) as n from marts.returns;", ".quit"])
    out = io.StringIO()
    con = open_published(place / "data" / "analyst.duckdb")
    try:
        shell(con, read=lambda _prompt: next(script), out=out)
    finally:
        con.close()
    errors = [line for line in out.getvalue().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}")
    assert "│ 1   │" in out.getvalue()  # the next statement ran
    assert EMAIL not in out.getvalue()
    assert snapshot(place) == before


def test_the_real_shell_refuses_every_case_from_stdin(place):
    before = snapshot(place)
    script = "".join(f"{statement};\n" for statement, _ in CASES) + "select 42 as answer;\n"
    env = {**os.environ, "RETURNSYNC_DATA_DIR": str(place / "data")}
    done = subprocess.run(
        [RETURNSYNC, "shell"],
        input=script,
        capture_output=True,
        text=True,
        cwd=place,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    errors = [line for line in done.stdout.split("sql> ") if line.startswith("error:")]
    assert len(errors) == len(CASES)
    for error, (statement, message) in zip(errors, CASES, strict=True):
        assert error.startswith(f"error: {message}"), statement
    assert "│ 42     │" in done.stdout
    assert EMAIL not in done.stdout
    assert snapshot(place) == before


def test_the_real_sql_command_is_one_line_and_exit_code_2(place):
    before = snapshot(place)
    for statement, message in CASES[:1] + CASES[9:10] + CASES[19:20]:
        done = subprocess.run(
            [RETURNSYNC, "sql", statement],
            capture_output=True,
            text=True,
            cwd=place,
            timeout=60,
        )
        assert (done.returncode, done.stdout) == (2, "")
        assert the_error(done.stderr) == message
    assert snapshot(place) == before


def test_queries_and_harmless_calls_still_work(place):
    before = snapshot(place)
    for statement in (
        "select count(*) from marts.returns",
        "from recon.mismatches",
        "show tables",
        "describe marts.returns",
        "summarize marts.returns",
        "explain select * from marts.returns",
        "pragma show_tables",
        "call pragma_show('marts.returns')",
        "checkpoint",
        "force checkpoint",
        "select current_setting('enable_external_access')",
        "select * from duckdb_settings()",
    ):
        result = CliRunner().invoke(main, ["sql", statement])
        assert result.exit_code == 0, (statement, result.output)
    assert snapshot(place) == before


def test_the_sandbox_is_on_and_locked(place):
    con = open_published(place / "data" / "analyst.duckdb")
    try:
        settings = dict(
            con.execute(
                "select name, value from duckdb_settings() where name in ?",
                [[*analyst.SANDBOX_CONFIG, "lock_configuration", "TimeZone"]],
            ).fetchall()
        )
    finally:
        con.close()
    assert settings == {
        **{name: str(value).lower() for name, value in analyst.SANDBOX_CONFIG.items()},
        "lock_configuration": "true",
        "TimeZone": "UTC",
    }


def test_the_published_copy_holds_no_raw_staging_or_meta(place):
    con = duckdb.connect(str(place / "data" / "analyst.duckdb"), read_only=True)
    try:
        schemas = {
            r[0]
            for r in con.execute(
                "select distinct schema_name from duckdb_tables() where not internal"
            ).fetchall()
        }
    finally:
        con.close()
    assert schemas == {"main", "marts", "recon"}


def test_an_export_never_overwrites_a_database(place):
    before = snapshot(place)
    for target in ("data/returnsync.duckdb", "data/analyst.duckdb", "data/returnsync.duckdb.wal"):
        result = CliRunner().invoke(main, ["sql", "--output", target, "select 1"])
        assert result.exit_code == 2
        assert the_error(result.output) == f"refused: --output {target} is a returnsync database"
    assert snapshot(place) == before
