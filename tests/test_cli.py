"""The `returnsync` command line: help for every command, and `run` end to end."""

import duckdb
from click.testing import CliRunner

from pipelines.cli import COMMANDS, main


def test_help_lists_commands_that_exist():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "run" in result.output
    listed = main.list_commands(None)
    assert "run" in listed and "prepare" in listed
    for name in listed:
        sub = CliRunner().invoke(main, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)
        assert "Usage:" in sub.output and len(sub.output.splitlines()) > 3, name
    assert set(listed) <= set(COMMANDS)


def test_unknown_command_is_an_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_run_on_missing_landing_is_a_clear_error(settings_env, tmp_path):
    result = CliRunner().invoke(main, ["run", "--landing", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "does not exist" in result.output


def test_run_builds_the_warehouse_and_prints_a_summary(settings_env, dbt_manifest):
    result = CliRunner().invoke(main, ["run", "--quiet", "--as-of", "2026-11-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "returnsync summary" in result.output
    # --quiet: the summary, not dbt's per-node log that dagster-dbt echoes
    assert "START sql" not in result.output and "Running with dbt" not in result.output
    con = duckdb.connect(str(settings_env.db_path), read_only=True)
    schemas = {
        r[0] for r in con.execute("select schema_name from information_schema.schemata").fetchall()
    }
    settings_rows = con.execute("select count(*) from seeds.recon_settings").fetchone()[0]
    con.close()
    assert {"raw", "meta", "staging", "seeds"} <= schemas
    assert settings_rows >= 6
