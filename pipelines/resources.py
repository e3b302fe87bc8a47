"""Dagster resources. Thin: they resolve settings when a run starts and hand out the library."""

from __future__ import annotations

import dagster as dg

from pipelines.settings import Settings


class SettingsResource(dg.ConfigurableResource):
    """Resolves `Settings` from the environment when a run starts (never at import).

    The optional fields override the environment, for tests and run config. The ERP password is
    never a config field: it only ever comes from the environment.
    """

    data_dir: str | None = None
    db_path: str | None = None
    landing_dir: str | None = None
    analyst_db_path: str | None = None
    kafka_bootstrap: str | None = None

    def get(self) -> Settings:
        return Settings.from_env(
            data_dir=self.data_dir,
            db_path=self.db_path,
            landing_dir=self.landing_dir,
            analyst_db_path=self.analyst_db_path,
            kafka_bootstrap=self.kafka_bootstrap,
        )
