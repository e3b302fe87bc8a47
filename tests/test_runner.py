"""The run config hands every resolved setting to the settings resource, so a run writes where
the caller said, not where the process's environment or working directory would point."""

from pipelines.resources import SettingsResource
from pipelines.runner import run_config
from pipelines.settings import Settings


def test_run_config_carries_every_path(tmp_path):
    settings = Settings.from_env(env={}, base_dir=tmp_path, landing_dir=tmp_path / "drops")
    config = run_config(settings, as_of="2026-11-01T00:00:00Z")
    resource = SettingsResource(**config["resources"]["settings"]["config"])
    resolved = resource.get()
    assert resolved.db_path == settings.db_path
    assert resolved.landing_dir == tmp_path / "drops"
    assert resolved.analyst_db_path == tmp_path / "data" / "analyst.duckdb"
    assert resolved.data_dir == settings.data_dir
    assert config["ops"]["returnsync_dbt_assets"]["config"]["as_of"] == "2026-11-01T00:00:00Z"
