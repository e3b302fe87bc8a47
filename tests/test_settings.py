import re
from pathlib import Path

import pytest

from pipelines.settings import ENV_VARS, PROJECT_ROOT, Settings


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


def test_bad_number_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="RETURNSYNC_KAFKA_MAX_RECORDS"):
        Settings.from_env(env={"RETURNSYNC_KAFKA_MAX_RECORDS": "many"}, base_dir=tmp_path)


def test_password_never_in_repr(tmp_path):
    settings = Settings.from_env(env={"RETURNSYNC_ERP_PASSWORD": "s3cr3t-pw"}, base_dir=tmp_path)
    assert settings.erp_password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(settings)


def test_env_example_lists_every_variable():
    text = (PROJECT_ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^(RETURNSYNC_[A-Z_]+)=", text, flags=re.M))
    assert listed == {var for var, _ in ENV_VARS.values()}


def test_erp_pull_is_an_explicit_flag(tmp_path):
    assert Settings.from_env(env={}, base_dir=tmp_path).erp_pull is False
    on = Settings.from_env(env={"RETURNSYNC_ERP_PULL": "true"}, base_dir=tmp_path)
    assert on.erp_pull is True
    with pytest.raises(ValueError, match="RETURNSYNC_ERP_PULL"):
        Settings.from_env(env={"RETURNSYNC_ERP_PULL": "sometimes"}, base_dir=tmp_path)
