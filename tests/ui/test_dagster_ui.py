"""Finance's view, in a real browser: `dagster dev` runs the main job and Chromium shows the
reconciliation checks and the mismatch report.

Headless Debian Chromium driven by Playwright (no browser download). Screenshots go to the test's
temporary folder; with UPDATE_SCREENSHOTS=1 they replace the ones under docs/.
"""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.recon.lifecycle import RULES
from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

AS_OF = "2026-11-01T00:00:00Z"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def dagster_dev(tmp_path, dbt_manifest):
    """`dagster dev` on 127.0.0.1 with its own DAGSTER_HOME and data directory."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    landing = tmp_path / "data" / "landing"
    made = CliRunner().invoke(
        main,
        [
            "simulate",
            "--returns",
            "120",
            "--seed",
            "11",
            "--out",
            str(landing),
            "--as-of",
            AS_OF,
            "--quiet",
        ],
    )
    assert made.exit_code == 0, made.output
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETURNSYNC_", "DAGSTER_"))}
    env |= {"DAGSTER_HOME": str(home), "RETURNSYNC_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", 180, process)
        yield port, landing
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def run_main_job(port: int) -> None:
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    deadline = time.monotonic() + 120
    while True:  # the code location may still be loading when the webserver first answers
        try:
            run_id = client.submit_job_execution(
                "main_job",
                run_config={"ops": {"returnsync_dbt_assets": {"config": {"as_of": AS_OF}}}},
            )
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)
    deadline = time.monotonic() + 600
    while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(3)
    assert status == "SUCCESS", f"main_job run {run_id} ended {status}"


def dismiss_newsletter(page) -> None:
    """Dagster's first-visit newsletter dialog covers the page; skip it when it shows."""
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()


def test_finance_sees_rule_checks_and_the_report(dagster_dev, tmp_path):
    from playwright.sync_api import sync_playwright

    port, landing = dagster_dev
    run_main_job(port)
    with open(landing / "expected_mismatches.csv", newline="") as fh:
        expected = list(csv.DictReader(fh))
    assert expected
    shots = PROJECT_ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        base = f"http://127.0.0.1:{port}"

        page.goto(f"{base}/assets/recon/mismatches?view=checks", wait_until="networkidle")
        dismiss_newsletter(page)
        for rule in RULES:  # one check per rule, each listed by name
            page.get_by_text(rule, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "ui-mismatch-checks.png"), full_page=True)

        page.goto(f"{base}/assets/recon/mismatch_report", wait_until="networkidle")
        dismiss_newsletter(page)
        page.get_by_text("Show Markdown").first.click()  # the full table of open mismatches
        rma = expected[0]["rma_number"]
        page.get_by_text(rma).first.wait_for(timeout=60_000)  # a row of the report table
        body = page.inner_text("body")
        page.screenshot(path=str(shots / "ui-mismatch-report.png"), full_page=True)
        browser.close()

    assert "mismatch_id" in body or "rule" in body
    assert "@" not in body.split("mismatch_report", 1)[-1]  # no e-mail address in the report
