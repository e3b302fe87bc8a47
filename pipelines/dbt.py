"""The dbt project as Dagster sees it: paths, the CLI resource, and manifest preparation.

`@dbt_assets` reads `target/manifest.json` when `assets/dbt.py` is imported, so the manifest must
exist first: `prepare_manifest()` (called by `returnsync prepare`, the CLI's `run`, the Makefile
and the test suite's conftest) parses the project when the manifest is missing or older than
any file of the project. The manifest is never committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from pipelines.settings import DBT_PROJECT_DIR, Settings

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

_SOURCE_GLOBS = (
    "dbt_project.yml",
    "profiles.yml",
    "models/**/*",
    "seeds/**/*",
    "macros/**/*",
    "tests/**/*",
)


def dbt_executable() -> str:
    """The dbt installed beside this Python (works whether or not the venv is activated)."""
    return str(Path(sys.executable).with_name("dbt"))


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()
    )


def use_settings(settings: Settings) -> None:
    """Point dbt subprocesses at the resolved warehouse (called when a run starts).

    dagster-dbt's CLI resource passes this process's environment to dbt; profiles.yml reads the
    absolute DuckDB path from RETURNSYNC_DB.
    """
    os.environ.update(settings.dbt_env())


def manifest_is_stale() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(
        path.stat().st_mtime > built
        for pattern in _SOURCE_GLOBS
        for path in Path(DBT_PROJECT_DIR).glob(pattern)
        if path.is_file() and "target" not in path.parts
    )


def run_dbt(args: list[str], settings: Settings) -> subprocess.CompletedProcess:
    """Run a dbt command on this project against the resolved warehouse; raises on failure."""
    use_settings(settings)
    result = subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(dbt_project.target_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"dbt {args[0]} failed:\n{result.stdout[-4000:]}\n{result.stderr}")
    return result


def prepare_manifest(settings: Settings | None = None, force: bool = False) -> Path:
    """`dbt parse` when the manifest is missing or stale; returns its path."""
    if force or manifest_is_stale():
        run_dbt(["parse", "--quiet"], settings or Settings.from_env())
    return dbt_project.manifest_path
