"""`returnsync sql` and `returnsync shell` on a published database."""

import re

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from pipelines.cli import main


@pytest.fixture
def published(tmp_path):
    path = tmp_path / "analyst.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""
        create schema marts;
        create table marts.returns as
            select * from (values ('k1', 'shopify', 12.50::decimal(18,2)),
                                  ('k2', 'amazon', 3.00::decimal(18,2)))
                          as t(return_key, channel, amount);
    """)
    con.close()
    return path


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_sql_prints_a_table(published):
    result = invoke("sql", "--db", str(published), "select * from marts.returns order by 1")
    assert result.exit_code == 0, result.output
    assert "shopify" in result.output and "12.50" in result.output


def test_sql_csv_is_exact(published):
    result = invoke(
        "sql",
        "--db",
        str(published),
        "--format",
        "csv",
        "select channel, amount from marts.returns order by 1",
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["channel,amount", "amazon,3.00", "shopify,12.50"]


def test_sql_parquet_needs_output_and_writes_it(published, tmp_path):
    bad = invoke("sql", "--db", str(published), "--format", "parquet", "select 1")
    assert bad.exit_code != 0 and "--output" in bad.output
    out = tmp_path / "r.parquet"
    ok = invoke(
        "sql",
        "--db",
        str(published),
        "--format",
        "parquet",
        "-o",
        str(out),
        "select * from marts.returns",
    )
    assert ok.exit_code == 0, ok.output
    assert pl.read_parquet(out).height == 2


def test_sql_is_read_only(published):
    result = invoke("sql", "--db", str(published), "delete from marts.returns")
    assert result.exit_code != 0
    assert "read-only" in result.output.lower()


def test_missing_database_is_a_clear_error(tmp_path):
    result = invoke("sql", "--db", str(tmp_path / "none.duckdb"), "select 1")
    assert result.exit_code != 0
    assert "returnsync run" in result.output


def test_shell_runs_statements_until_quit(published):
    script = ".tables\nselect count(*) as n\nfrom marts.returns;\nselect nope;\n.quit\n"
    result = CliRunner().invoke(main, ["shell", "--db", str(published)], input=script)
    assert result.exit_code == 0, result.output
    assert "marts.returns" in result.output
    assert "│ 2   │" in result.output  # the count, as a table row
    assert "error:" in result.output  # a bad statement is reported, the shell goes on


def test_exports_are_written_by_the_cli_not_by_duckdb(published, tmp_path):
    # DuckDB's own writers are blocked by the sandbox; --output still writes CSV and Parquet
    query = "select channel, -amount as credit from marts.returns order by 1"
    for name, fmt in (("r.csv", "csv"), ("r.parquet", "parquet"), ("t.parquet", "table")):
        target = tmp_path / name
        result = invoke("sql", "--db", str(published), "--format", fmt, "-o", str(target), query)
        assert result.exit_code == 0, result.output
        assert "2 rows written to" in result.output
    assert (tmp_path / "r.csv").read_text() == "channel,credit\namazon,-3.00\nshopify,-12.50\n"
    assert (
        pl.read_parquet(tmp_path / "r.parquet").rows()
        == pl.read_parquet(tmp_path / "t.parquet").rows()
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_a_failed_query_writes_no_file_and_exits_2(published, tmp_path):
    target = tmp_path / "out.csv"
    result = invoke("sql", "--db", str(published), "-o", str(target), "select nope")
    assert result.exit_code == 2
    assert re.fullmatch(r"(Error|returnsync: error): Binder Error: [^\n]*\n", result.output)
    assert not target.exists()
