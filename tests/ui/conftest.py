"""The UI tests' fixtures, one of each per test run whatever module asks (tests/ui/helpers.py has
what they are built from):

- `dagster_ui`: a project directory as a user has it (data/ with a simulated landscape, and
  .dagster_home/), two `returnsync run`s from the command line with an acknowledgement between
  them, and one `dagster-webserver` reading that instance, as `make dev` reads a checkout's;
- `browser`: headless Debian Chromium (Playwright, no browser download);
- `page`: a fresh browser context and page per test (a first visit: nothing remembered);
- `shots`: where screenshots go (docs/ with UPDATE_SCREENSHOTS=1, else the test's folder).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from pipelines.runner import dagster_yaml
from pipelines.settings import PROJECT_ROOT
from returnsync_sim import SCENARIOS, SimOptions, simulate
from tests.ui.helpers import (
    ACKNOWLEDGED_RULE,
    AS_OF,
    CHROMIUM,
    CHROMIUM_ARGS,
    LEFT_OUT,
    NOTE,
    DagsterUI,
    cli_env,
    free_port,
    open_mismatch,
    returnsync,
    wait_for,
)


@pytest.fixture(scope="session")
def dagster_ui(tmp_path_factory, dbt_manifest) -> Iterator[DagsterUI]:
    """One `dagster-webserver` for the session, after two CLI runs and an acknowledgement."""
    project = tmp_path_factory.mktemp("ui-project")
    data, home = project / "data", project / ".dagster_home"
    # every scenario but the faults behind two rules: nine checks must fail, two must pass
    simulate(
        120,
        11,
        data / "landing",
        datetime.fromisoformat(AS_OF),
        SimOptions(scenarios=frozenset(s.name for s in SCENARIOS) - LEFT_OUT),
        progress=False,
    )
    home.mkdir()
    # as `make dev` has it: returnsync's event log storage (pipelines.eventlog)
    (home / "dagster.yaml").write_text(dagster_yaml(home))
    port = free_port()
    log = (project / "dagster-webserver.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env=cli_env(data) | {"DAGSTER_HOME": str(home)},  # what `make dev` exports
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # the user's runs, while the webserver starts
        returnsync("run", "--quiet", "--as-of", AS_OF, project=project, data=data)
        acknowledged = open_mismatch(data, ACKNOWLEDGED_RULE)
        returnsync(
            "acknowledge", acknowledged, "--by", "finance.lead", "--note", NOTE,
            project=project, data=data,
        )  # fmt: skip
        returnsync("run", "--quiet", "--as-of", AS_OF, project=project, data=data)
        logs = tuple(sorted((data / "logs").glob("run-*.log")))
        wait_for(f"http://127.0.0.1:{port}/server_info", 180, server)
        yield DagsterUI(port, project, data, home, logs, acknowledged)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page (no stored state: a first visit, when Dagster would show its dialog)."""
    context = browser.new_context(viewport={"width": 1600, "height": 1300})
    yield context.new_page()
    context.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: docs/ with UPDATE_SCREENSHOTS=1, else the test's folder."""
    return PROJECT_ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
