"""The `returnsync` command line: help for every command, and `run` end to end.

What each test guards is said in it; none depends on the wording of an error message (the exit
codes of pipelines.errors are the contract), so the CLI's messages can change freely.
"""

import duckdb
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.errors import EXIT_USAGE

# The commands the README and DESIGN §7 promise, written here by hand: a command that disappears
# from the CLI (or one added without being documented and tested) fails the first test.
DOCUMENTED_COMMANDS = [
    "acknowledge",
    "adjustments",
    "approve",
    "dead-letters",
    "docs",
    "exceptions",
    "ingest",
    "prepare",
    "push",
    "quarantine",
    "reject",
    "replay",
    "report",
    "run",
    "shell",
    "simulate",
    "sql",
    "trace",
    "unacknowledge",
    "watch",
]


def test_the_cli_offers_exactly_the_documented_commands_each_with_its_help():
    assert sorted(main.list_commands(None)) == DOCUMENTED_COMMANDS
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0, top.output
    listed = {
        line.split()[0] for line in top.output.split("Commands:", 1)[1].splitlines() if line.strip()
    }
    assert listed == set(DOCUMENTED_COMMANDS)  # what `returnsync --help` shows a user
    for name in DOCUMENTED_COMMANDS:
        sub = CliRunner().invoke(main, [name, "--help"], prog_name="returnsync")
        assert sub.exit_code == 0, (name, sub.output)
        lines = sub.output.splitlines()
        # its own usage line, a sentence saying what it does, and an option besides --help
        assert lines[0].startswith(f"Usage: returnsync {name} "), (name, lines[0])
        assert lines[1] == "" and len(lines[2].strip()) > 10, (name, sub.output)
        options = [ln for ln in lines[lines.index("Options:") :] if ln.strip().startswith("-")]
        assert any("--help" not in ln for ln in options), (name, sub.output)


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == EXIT_USAGE
    assert "frobnicate" in result.output


def test_run_on_missing_landing_is_a_configuration_error_naming_it(settings_env, tmp_path):
    missing = tmp_path / "nope"
    result = CliRunner().invoke(main, ["run", "--landing", str(missing)])
    assert result.exit_code == EXIT_USAGE  # configuration errors exit 2, before anything lands
    assert str(missing) in result.output
    assert not settings_env.db_path.exists()


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
