import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.errors import EXIT_USAGE, ConfigError
from pipelines.settings import ENV_VARS, PROJECT_ROOT, Settings, check_erp_url, parse_as_of


def test_defaults_are_embedded_mode_under_data(tmp_path):
    settings = Settings.from_env(env={}, base_dir=tmp_path)
    assert settings.data_dir == tmp_path / "data"
    assert settings.db_path == tmp_path / "data" / "returnsync.duckdb"
    assert settings.landing_dir == tmp_path / "data" / "landing"
    assert not settings.uses_kafka
    assert settings.erp_password is None


def test_environment_and_overrides(tmp_path):
    env = {
        "RETURNSYNC_DATA_DIR": "state",
        "RETURNSYNC_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "RETURNSYNC_DB": "/abs/wh.duckdb",
        "RETURNSYNC_KAFKA_MAX_RECORDS": "1000",
    }
    settings = Settings.from_env(env=env, base_dir=tmp_path, landing_dir="drops")
    assert settings.db_path == Path("/abs/wh.duckdb")
    assert settings.landing_dir == tmp_path / "drops"
    assert settings.uses_kafka and settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_max_records == 1000
    assert settings.dbt_env()["RETURNSYNC_DB"] == "/abs/wh.duckdb"


def test_bad_number_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="RETURNSYNC_KAFKA_MAX_RECORDS") as caught:
        Settings.from_env(env={"RETURNSYNC_KAFKA_MAX_RECORDS": "many"}, base_dir=tmp_path)
    assert caught.value.exit_code == EXIT_USAGE
    for bad in ("abc", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="RETURNSYNC_LOCK_WAIT_S"):
            Settings.from_env(env={"RETURNSYNC_LOCK_WAIT_S": bad}, base_dir=tmp_path)


def test_lock_wait_defaults_to_120_seconds(tmp_path):
    assert Settings.from_env(env={}, base_dir=tmp_path).lock_wait_s == 120
    settings = Settings.from_env(env={"RETURNSYNC_LOCK_WAIT_S": "2.5"}, base_dir=tmp_path)
    assert settings.lock_wait_s == 2.5


def test_password_never_in_repr(tmp_path):
    settings = Settings.from_env(env={"RETURNSYNC_ERP_PASSWORD": "s3cr3t-pw"}, base_dir=tmp_path)
    assert settings.erp_password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(settings)


def test_env_example_lists_every_variable():
    text = (PROJECT_ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^(RETURNSYNC_[A-Z_]+)=", text, flags=re.M))
    assert listed == {var for var, _ in ENV_VARS.values()}
    # the defaults written there are the code's (a default derived from the data dir is empty)
    values = dict(re.findall(r"^(RETURNSYNC_[A-Z_]+)=(.*)$", text, flags=re.M))
    for var, default in ENV_VARS.values():
        if default is not None and "{data_dir}" not in default:
            assert values[var] == default, var


def test_readme_configuration_table_lists_every_variable():
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    cells = [
        re.split(r"(?<!\\)\|", line)[1:3]  # a table cell may hold an escaped pipe
        for line in section.splitlines()
        if line.startswith("| `RETURNSYNC_")
    ]
    defaults = {
        var: default.strip().strip("`").replace("\\|", "|")
        for names, default in cells
        for var in re.findall(r"`(RETURNSYNC_[A-Z_]+)`", names)
    }
    assert set(defaults) == {var for var, _ in ENV_VARS.values()}
    for var, default in ENV_VARS.values():
        if default is not None and "{data_dir}" not in default:
            assert defaults[var] == default, var


def test_erp_pull_is_an_explicit_flag(tmp_path):
    assert Settings.from_env(env={}, base_dir=tmp_path).erp_pull is False
    on = Settings.from_env(env={"RETURNSYNC_ERP_PULL": "true"}, base_dir=tmp_path)
    assert on.erp_pull is True
    with pytest.raises(ConfigError, match="RETURNSYNC_ERP_PULL"):
        Settings.from_env(env={"RETURNSYNC_ERP_PULL": "sometimes"}, base_dir=tmp_path)


@pytest.mark.parametrize(
    "url", ["not a url", "localhost:8000", "ftp://erp.example", "http://", "http://h:port"]
)
def test_an_erp_url_that_is_not_a_url_is_a_configuration_error(tmp_path, url):
    with pytest.raises(ConfigError, match="RETURNSYNC_ERP_URL"):
        Settings.from_env(env={"RETURNSYNC_ERP_URL": url}, base_dir=tmp_path)


def test_erp_url_errors_never_show_credentials_in_the_url():
    with pytest.raises(ConfigError) as caught:
        check_erp_url("http://admin:hunter2@erp.example:port/")
    assert "hunter2" not in str(caught.value) and "admin" not in str(caught.value)
    assert check_erp_url("https://erp.example/tryton") == "https://erp.example/tryton"
    assert check_erp_url("") is None


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T00:00:00", datetime(2026, 11, 1, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-01T02:00:00+02:00", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-12-07T11:59:00Z", datetime(2026, 12, 7, 11, 59, tzinfo=UTC)),  # < 1 day ahead
    ],
)
def test_as_of_accepts_iso_8601_with_or_without_zone(text, expected):
    assert parse_as_of(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("yesterday", "not an ISO-8601"),
        ("2026-13-01T00:00:00Z", "not an ISO-8601"),
        ("0001-01-01T00:00:00+14:00", "not an ISO-8601"),  # before the representable range
        ("2027-11-01T00:00:00Z", "more than a day in the future"),  # the typo of issue 19
        ("2026-12-07T12:00:01Z", "more than a day in the future"),
    ],
)
def test_as_of_that_cannot_be_right_is_a_configuration_error(text, reason):
    with pytest.raises(ConfigError, match=reason):
        parse_as_of(text, now=NOW)
