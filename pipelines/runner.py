"""Run the code location's jobs in this process (the CLI's `run`; tests).

Kept apart from `definitions.py`, which only builds the `Definitions`: this module prepares the
dbt manifest first (the dbt assets read it on import), then loads the code location.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import dagster as dg

from pipelines.dbt import prepare_manifest
from pipelines.settings import Settings

MAIN_JOB = "main_job"


def load_definitions(settings: Settings | None = None) -> dg.Definitions:
    prepare_manifest(settings)
    return importlib.import_module("pipelines.definitions").defs


def run_config(settings: Settings, as_of: str | None, quiet: bool = False) -> dict:
    config: dict = {
        "resources": {
            "settings": {
                "config": {
                    "data_dir": str(settings.data_dir),
                    "db_path": str(settings.db_path),
                    "landing_dir": str(settings.landing_dir),
                    "analyst_db_path": str(settings.analyst_db_path),
                    "kafka_bootstrap": settings.kafka_bootstrap,
                }
            }
        },
        "ops": {"returnsync_dbt_assets": {"config": {"as_of": as_of}}},
    }
    if quiet:
        config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    return config


def main_job(defs: dg.Definitions) -> dg.JobDefinition:
    """`main_job` when the code location defines it, else every asset."""
    try:
        return defs.resolve_job_def(MAIN_JOB)
    except dg.DagsterInvariantViolationError:
        return defs.resolve_implicit_global_asset_job_def()


def instance() -> dg.DagsterInstance:
    """The instance in DAGSTER_HOME (created, telemetry off, if missing), else a throw-away one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    config = Path(home) / "dagster.yaml"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


def run_main_job(settings: Settings, as_of: str | None = None, quiet: bool = False) -> bool:
    defs = load_definitions(settings)
    job = main_job(defs)
    with instance() as inst:
        result = job.execute_in_process(
            run_config=run_config(settings, as_of, quiet), instance=inst, raise_on_error=False
        )
    return result.success
