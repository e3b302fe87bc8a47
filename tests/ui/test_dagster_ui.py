"""Finance's view, in a real browser: `dagster dev` runs the main job and Chromium shows the
reconciliation checks and the mismatch report.

Headless Debian Chromium driven by Playwright (no browser download). Screenshots go to the test's
temporary folder; with UPDATE_SCREENSHOTS=1 they replace the ones under docs/.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from pipelines.lib.recon.lifecycle import RULES
from pipelines.settings import PROJECT_ROOT
from returnsync_sim import SCENARIOS, SimOptions, simulate

pytestmark = pytest.mark.slow

AS_OF = "2026-11-01T00:00:00+00:00"
# the faults behind these rules are left out of the landscape, so their checks pass
LEFT_OUT = frozenset({"unmapped_sku", "credit_currency_wrong"})
PASSING_RULES = {"unmapped_sku", "currency_mismatch"}
# how the UI words a check's outcome (a passed check "Succeeded" in the list)
OUTCOME = {"Succeeded": "passed", "Passed": "passed", "Failed": "failed", "Warning": "failed"}
STATE = "(" + "|".join(OUTCOME) + ")"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
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
    # every scenario but the faults behind two rules: nine checks must fail, two must pass
    simulate(
        120,
        11,
        landing,
        datetime.fromisoformat(AS_OF),
        SimOptions(scenarios=frozenset(s.name for s in SCENARIOS) - LEFT_OUT),
        progress=False,
    )
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
        yield port, tmp_path / "data"
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
    if status != "SUCCESS":
        raise AssertionError(f"main_job run {run_id} ended {status}: {_failures(client, run_id)}")


def _failures(client, run_id: str) -> str:
    """The run's step failures, so a failed run says why (not only that it failed)."""
    query = """query($runId: ID!) { logsForRun(runId: $runId, limit: 5000) {
        ... on EventConnection { events { __typename ... on MessageEvent { message stepKey }
        ... on ExecutionStepFailureEvent { error { message } } } } } }"""
    try:
        events = client._execute(query, {"runId": run_id})["logsForRun"]["events"]
    except Exception as exc:  # the explanation must not hide the failure itself
        return f"(could not read the run's events: {exc})"
    failed = [
        e for e in events if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
    ]
    return json.dumps(failed)[:4000]


def dismiss_newsletter(page, wait_ms: int = 0) -> None:
    """Dagster's first-visit newsletter dialog covers the page (and swallows clicks); skip it.

    It appears a moment after the first page loads, so the first call waits for it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    if wait_ms:
        try:
            skip.first.wait_for(timeout=wait_ms)
        except PlaywrightTimeout:
            return
    if skip.count():
        skip.first.click()


def open_counts(data: Path) -> dict[str, int]:
    """Open mismatches per rule, read from the warehouse the run wrote (what the UI must show)."""
    with duckdb.connect(str(data / "returnsync.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select rule, count(*) from recon.mismatches where status = 'open' group by 1"
        ).fetchall()
    return {rule: dict(rows).get(rule, 0) for rule in RULES}


def open_rmas(data: Path) -> set[str]:
    with duckdb.connect(str(data / "returnsync.duckdb"), read_only=True) as con:
        rows = con.execute("select distinct rma_number from recon.mismatches where status = 'open'")
        return {r for (r,) in rows.fetchall() if r}


def personal_data(landing: Path) -> set[str]:
    """Every customer's full name and e-mail address, as the returns platform sent them."""
    found = set()
    for path in (landing / "returns_saas").glob("*.ndjson"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                customer = json.loads(line)["payload"]["customer"]
            except (ValueError, KeyError, TypeError):
                continue  # a corrupted delivery the simulator planted
            found.add(f"{customer['first_name']} {customer['last_name']}")
            found.add(customer["email"])
    assert len(found) > 50, "the landscape should carry customers' personal data"
    return found


def check_detail(page, base: str, rule: str) -> str:
    """The text of one check's detail panel (its latest evaluation and metadata)."""
    page.goto(f"{base}/assets/recon/mismatches?view=checks&checkDetail={rule}")
    page.get_by_text(f"open {rule} mismatch(es)").first.wait_for(timeout=60_000)
    dismiss_newsletter(page)
    return page.inner_text("body")


def test_finance_sees_rule_checks_and_the_report(dagster_dev, tmp_path):
    from playwright.sync_api import sync_playwright

    port, data = dagster_dev
    run_main_job(port)
    counts = open_counts(data)
    assert {r for r, n in counts.items() if n == 0} == PASSING_RULES  # the premise
    rmas = open_rmas(data)
    secrets = personal_data(data / "landing")
    shots = PROJECT_ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    pages: dict[str, str] = {}  # every page text shown, scanned whole for personal data below

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        base = f"http://127.0.0.1:{port}"

        page.goto(f"{base}/assets/recon/mismatches?view=checks", wait_until="networkidle")
        dismiss_newsletter(page, wait_ms=15_000)
        for rule in RULES:  # one check per rule, each listed by name
            page.get_by_text(rule, exact=True).first.wait_for(timeout=60_000)
        pages["checks"] = page.inner_text("body")
        page.screenshot(path=str(shots / "ui-mismatch-checks.png"), full_page=True)
        listed = re.findall(rf"^(\w+)\n(?:\1\n)?{STATE}$", pages["checks"], re.M)
        expected_states = {r: ("passed" if counts[r] == 0 else "failed") for r in RULES}
        assert {r: OUTCOME[state] for r, state in listed} == expected_states, pages["checks"]

        for rule in RULES:  # each check's latest evaluation: its state and count
            text = pages[rule] = check_detail(page, base, rule)
            state = re.search(rf"Evaluation result\n+{STATE}\n", text)
            assert state and OUTCOME[state[1]] == expected_states[rule], (rule, text)
            assert re.search(rf"\ncount\n+{counts[rule]}\n", text), (rule, counts[rule], text)
            assert f"{counts[rule]} open {rule} mismatch(es)" in text, (rule, text)

        page.goto(f"{base}/assets/recon/mismatch_report", wait_until="networkidle")
        dismiss_newsletter(page)
        pages["report"] = page.inner_text("body")
        for key, shows in (("by_rule", "amount_at_risk"), ("mismatches", sorted(rmas)[0])):
            row = page.locator("tr").filter(has=page.get_by_text(key, exact=True))
            row.get_by_text("Show Markdown").first.click()  # the Markdown table in a dialog
            page.get_by_role("dialog").get_by_text(shows).first.wait_for(timeout=60_000)
            pages[key] = page.inner_text("body")
            if key == "mismatches":
                page.screenshot(path=str(shots / "ui-mismatch-report.png"), full_page=True)
            page.keyboard.press("Escape")
        browser.close()

    # the report's table shows every open mismatch's RMA; its summary each failing rule's count
    shown = {rma for rma in rmas if rma in pages["mismatches"]}
    assert shown == rmas, sorted(rmas - shown)[:10]
    for rule, n in counts.items():
        in_summary = re.search(rf"^{rule}\s+\w+\s+(\d+)\s", pages["by_rule"], re.M)
        assert (int(in_summary[1]) if in_summary else 0) == n, (rule, n, pages["by_rule"])
    # no page shows a customer's name or e-mail address (nor any e-mail address at all)
    for name, text in pages.items():
        assert not EMAIL.findall(text), (name, EMAIL.findall(text)[:5])
        leaked = [s for s in secrets if s in text]
        assert not leaked, (name, leaked[:5])
