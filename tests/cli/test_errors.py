"""Every CLI error is one line on standard error with its exit code (DESIGN §12), through the real
`returnsync` command: usage, configuration checked before anything lands, a bug's traceback kept
out of the user's way. The slower cases (a run that fails, degraded sources, the lock wait) are in
tests/hostile/test_cli.py and tests/hostile/test_degraded.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.errors import EXIT_FAILED, EXIT_USAGE
from tests.cli.helpers import clean_env, error_line, returnsync


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    """A small simulated landscape: every source has files that a run would land."""
    out = tmp_path_factory.mktemp("cli") / "landing"
    made = returnsync(
        "simulate", "--returns", "20", "--seed", "3", "--out", str(out),
        "--as-of", "2026-11-01T00:00:00Z", "--quiet",
        env=clean_env(out.parent / "unused"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return out


def test_usage_errors_are_one_line_exit_2(tmp_path):
    env = clean_env(tmp_path / "data")
    unknown = error_line(returnsync("frobnicate", env=env), EXIT_USAGE)
    assert "No such command 'frobnicate'" in unknown and "returnsync --help" in unknown
    option = error_line(returnsync("run", "--bogus", env=env), EXIT_USAGE)
    assert "No such option '--bogus'" in option and "returnsync run --help" in option
    choice = error_line(returnsync("report", "--format", "xls", env=env), EXIT_USAGE)
    assert "'xls' is not one of" in choice
    missing = error_line(returnsync("approve", "adj-1", env=env), EXIT_USAGE)
    assert "Missing option '--by'" in missing
    assert not (tmp_path / "data").exists()  # nothing was created


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETURNSYNC_KAFKA_MAX_RECORDS", "abc"),
        ("RETURNSYNC_LOCK_WAIT_S", "soon"),
        ("RETURNSYNC_ERP_PULL", "sometimes"),
        ("RETURNSYNC_ERP_URL", "not a url"),
    ],
)
def test_a_bad_setting_is_exit_2_before_anything(tmp_path, landing, variable, value):
    env = clean_env(tmp_path / "data", **{variable: value})
    for args in (["run", "--landing", str(landing)], ["report"], ["push"]):
        line = error_line(returnsync(*args, env=env), EXIT_USAGE)
        assert variable in line and repr(value) in line
    assert not (tmp_path / "data").exists()  # no warehouse, no log: nothing happened


@pytest.mark.parametrize(
    ("as_of", "reason"),
    [
        ("yesterday", "not an ISO-8601 time"),  # failed only after landing before
        ("2026-02-30T00:00:00Z", "not an ISO-8601 time"),
        ("2027-11-01T00:00:00Z", "more than a day in the future"),  # the typo of issue 19
    ],
)
def test_run_checks_as_of_before_anything_lands(tmp_path, landing, as_of, reason):
    env = clean_env(tmp_path / "data")
    line = error_line(returnsync("run", "--landing", str(landing), "--as-of", as_of, env=env), 2)
    assert reason in line and repr(as_of) in line
    assert not (tmp_path / "data").exists()  # no warehouse: nothing landed, nothing approved


def test_run_refuses_a_missing_landing_dir_and_missing_erp_settings(tmp_path, landing):
    env = clean_env(tmp_path / "data")
    line = error_line(returnsync("run", "--landing", str(tmp_path / "nope"), env=env), EXIT_USAGE)
    assert "does not exist" in line
    pull = clean_env(tmp_path / "data", RETURNSYNC_ERP_PULL="true")
    line = error_line(returnsync("run", "--landing", str(landing), env=pull), EXIT_USAGE)
    assert "ERP credentials are not configured" in line and "RETURNSYNC_ERP_URL" in line
    assert not (tmp_path / "data").exists()


def test_commands_on_a_missing_or_foreign_warehouse_are_exit_2(tmp_path):
    env = clean_env(tmp_path / "data")
    for args in (
        ["report"],
        ["acknowledge", "m1", "--by", "ann"],
        ["approve", "a1", "--by", "ann"],
    ):
        line = error_line(returnsync(*args, env=env), EXIT_USAGE)
        assert "no warehouse at" in line
    foreign = tmp_path / "foreign.duckdb"
    foreign.write_bytes(b"this is not a DuckDB file\n" * 200)
    line = error_line(returnsync("report", "--db", str(foreign), env=env), EXIT_USAGE)
    assert "cannot open the warehouse" in line
    assert foreign.read_bytes() == b"this is not a DuckDB file\n" * 200


def test_an_unexpected_error_is_one_line_with_the_traceback_in_a_file(tmp_path):
    env = clean_env(tmp_path / "data")
    db = tmp_path / "data" / "returnsync.duckdb"
    db.parent.mkdir()
    duckdb.connect(str(db)).close()
    result = returnsync("report", env=env, fault=("bug",))
    line = error_line(result, EXIT_FAILED)
    assert "unexpected TypeError: injected bug" in line
    path = line.rsplit("traceback in ", 1)[1].rstrip(")")
    assert path.startswith(str(tmp_path / "data" / "logs" / "crash-"))
    kept = Path(path).read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in kept and "list_mismatches" in kept
