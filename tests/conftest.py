"""Test-suite set-up shared by every area.

- The dbt manifest is prepared once before any test imports the code location.
- Every module in tests/fixtures/ is a pytest plugin (real-server fixtures, each started once per
  test run), so adding a server fixture needs no edit here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# `make test` exports DAGSTER_HOME=<checkout>/.dagster_home (for `make dev`); without it, a run a
# test starts is recorded in `.dagster_home` beside that test's data directory
# (pipelines.runner.dagster_home), never in the checkout's instance.
os.environ.pop("DAGSTER_HOME", None)

# Property-based tests (hypothesis): CI runs a fixed, derandomized 200 examples per reader; `make
# fuzz` selects the long profile (HYPOTHESIS_PROFILE=fuzz). Registered before any test imports.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci",
        max_examples=200,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    settings.register_profile(
        "fuzz",
        max_examples=20_000,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the dev extras are not installed; the property tests will say so
    pass

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if not p.name.startswith("_")
)


# Conformance samples written by others (Debezium, Shopify, Amazon), read-only beside the checkout.
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def pytest_configure(config) -> None:
    """Stop before collection with a clear message when the shared samples are not there: some
    test modules read them at import, which would otherwise fail with a bare traceback."""
    if not SHARED_FIXTURES.is_dir():
        raise pytest.UsageError(
            f"the shared conformance samples are missing: {SHARED_FIXTURES} "
            "(the tests read ../shared/fixtures beside the checkout; clone returnsync next to "
            "the shared/ directory, as CI does)"
        )


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """The dbt manifest, parsed once per run (the dbt assets read it when they are imported)."""
    from pipelines.dbt import prepare_manifest

    return prepare_manifest()


@pytest.fixture(scope="session")
def definitions(dbt_manifest):
    import importlib

    return importlib.import_module("pipelines.definitions").defs


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    """A private data directory for one test: its own warehouse and landing directory."""
    from pipelines.settings import ENV_VARS, Settings

    for var, _ in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # runs go to <tmp_path>/.dagster_home
    monkeypatch.setenv("RETURNSYNC_DATA_DIR", str(tmp_path / "data"))
    settings = Settings.from_env()
    settings.landing_dir.mkdir(parents=True)
    return settings


def pytest_sessionfinish(session, exitstatus) -> None:
    """A skipped or xfailed test fails the run: every test here starts the real servers it needs
    and fails, never skips, when one cannot start (docs/testing.md)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or exitstatus != pytest.ExitCode.OK:
        return
    counts = {k: len(reporter.stats.get(k, [])) for k in ("skipped", "xfailed", "xpassed")}
    if any(counts.values()):
        found = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        reporter.ensure_newline()
        reporter.write_line(f"returnsync: {found}: the suite allows no skip or xfail", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
