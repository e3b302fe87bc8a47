"""Finance's view, in a real browser, of runs started from the command line (DESIGN §11).

One `dagster-webserver` per test session (`dagster_ui`, session-scoped: other tests here reuse
it) reads the Dagster instance of a project directory, exactly as `make dev` does: the instance in
`<project>/.dagster_home`, the data in `<project>/data`. The runs are the user's: `returnsync run`
from the command line (no DAGSTER_HOME: the CLI finds `.dagster_home` beside the data on its own),
then `returnsync acknowledge --note`, then `returnsync run` again. The tests check that the UI's
instance holds those runs, that the checks count the acknowledgement, that worst rows and the
report are tables on the page (no click), that money at risk is plotted, and that nothing covers
the page (Dagster's "Join the Dagster community" dialog is off: `nux: {enabled: false}`).

Headless Debian Chromium driven by Playwright (no browser download). Screenshots go to the test's
temporary folder; with UPDATE_SCREENSHOTS=1 they replace the ones under docs/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
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
ACKNOWLEDGED_RULE = "credit_amount_mismatch"  # one of its open mismatches is acknowledged
NOTE = "credit corrected by hand, CN-2026-114"
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
RETURNSYNC = Path(sys.executable).with_name("returnsync")
# the instance `make dev` uses, less Dagster's first-visit community dialog
DAGSTER_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass(frozen=True)
class DagsterUI:
    """A webserver on the instance of a project whose runs came from the command line."""

    port: int
    project: Path  # holds data/ and .dagster_home/, like a checkout
    data: Path
    home: Path
    run_logs: tuple[Path, ...]  # the CLI's run logs, oldest first (their names hold run ids)
    acknowledged: str  # the mismatch acknowledged between the two runs

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.load(response)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]


def cli_env(data: Path) -> dict[str, str]:
    """A user's shell: no DAGSTER_* and no RETURNSYNC_* but the data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETURNSYNC_", "DAGSTER_"))}
    return env | {"RETURNSYNC_DATA_DIR": str(data)}


def returnsync(*args: str, project: Path, data: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(RETURNSYNC), *args],
        cwd=project,
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result


def _open_mismatch(data: Path, rule: str) -> str:
    with duckdb.connect(str(data / "returnsync.duckdb"), read_only=True) as con:
        (found,) = con.execute(
            "select min(mismatch_id) from recon.mismatches where status = 'open' and rule = ?",
            [rule],
        ).fetchone()
    assert found, f"the landscape should have an open {rule}"
    return found


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
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
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
        acknowledged = _open_mismatch(data, ACKNOWLEDGED_RULE)
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


# what sits above the page: a dialog, an overlay, a portal (Blueprint's and Dagster's own)
_COVERS = "[role=dialog], [role=alertdialog], [class*=overlay], [class*=Overlay], [class*=portal]"


def assert_nothing_covers(page) -> None:
    """No dialog or overlay is shown, and what is under the page's points is the page itself."""
    found = page.evaluate(
        """(covers) => {
            const shown = (e) => { const r = e.getBoundingClientRect();
                return r.width > 0 && r.height > 0
                    && getComputedStyle(e).visibility !== 'hidden'; };
            const w = window.innerWidth, h = window.innerHeight;
            const points = [[w / 2, h / 2], [w / 4, h / 4], [3 * w / 4, h / 4],
                            [w / 4, 3 * h / 4], [3 * w / 4, 3 * h / 4], [w - 40, 40]];
            return {
                dialogs: [...document.querySelectorAll('[role=dialog], [role=alertdialog]')]
                    .filter(shown).map((e) => e.innerText.slice(0, 120)),
                covered: points.map(([x, y]) => document.elementFromPoint(x, y))
                    .filter((e) => e && e.closest(covers))
                    .map((e) => e.closest(covers).outerHTML.slice(0, 160)),
            };
        }""",
        _COVERS,
    )
    assert found == {"dialogs": [], "covered": []}, found
    assert "Join the Dagster community" not in page.inner_text("body")


def hide_navigation(page) -> None:
    """More room for the tables in a screenshot (the UI's own button)."""
    button = page.get_by_text("Hide navigation", exact=True)
    if button.count():
        button.first.click()
        page.wait_for_timeout(500)


def wait_for_app(page, url: str) -> None:
    page.goto(url, wait_until="networkidle")
    page.wait_for_timeout(2_000)  # the community dialog, when it is on, opens a moment later


# -- the CLI's runs are the UI's ----------------------------------------------------------------


RUNS = """{ runsOrError(filter: {pipelineName: "main_job"}) {
    ... on Runs { results { runId status } } } }"""
CHECK_EXECUTIONS = """query($key: AssetKeyInput!, $check: String!) {
    assetCheckExecutions(assetKey: $key, checkName: $check, limit: 10) {
        runId status evaluation { metadataEntries { label
            ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } } } } }"""
MATERIALIZATIONS = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 10) { runId metadataEntries { label
        ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } } } } } }"""
MISMATCHES = {"path": ["recon", "mismatches"]}


def numbers(entries: list[dict]) -> dict[str, float]:
    return {
        e["label"]: e.get("intValue", e.get("floatValue"))
        for e in entries
        if "intValue" in e or "floatValue" in e
    }


def test_cli_runs_are_recorded_in_the_instance_the_ui_reads(dagster_ui):
    runs = dagster_ui.graphql(RUNS)["runsOrError"]["results"]
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], runs
    # the two runs are the CLI's: each wrote its log named after its run id
    logged = {log.stem.rsplit("-", 1)[1] for log in dagster_ui.run_logs}
    assert {r["runId"][:8] for r in runs} == logged, (runs, dagster_ui.run_logs)
    # and nothing went to a throw-away instance or the checkout's: the instance is beside data/
    assert (dagster_ui.home / "history" / "runs.db").is_file()
    materialized = dagster_ui.graphql(MATERIALIZATIONS, {"key": MISMATCHES})["assetOrError"]
    assert {m["runId"] for m in materialized["assetMaterializations"]} == {r["runId"] for r in runs}


def test_after_an_acknowledge_the_ui_counts_it(dagster_ui, page):
    runs = dagster_ui.graphql(RUNS)["runsOrError"]["results"]  # newest first
    executions = dagster_ui.graphql(
        CHECK_EXECUTIONS, {"key": MISMATCHES, "check": ACKNOWLEDGED_RULE}
    )["assetCheckExecutions"]
    by_run = {e["runId"]: numbers(e["evaluation"]["metadataEntries"]) for e in executions}
    before, after = by_run[runs[1]["runId"]], by_run[runs[0]["runId"]]
    assert before["acknowledged"] == 0 and after["acknowledged"] == 1, (before, after)
    assert after["count"] == before["count"] - 1  # no longer counted as open
    latest = dagster_ui.graphql(MATERIALIZATIONS, {"key": MISMATCHES})["assetOrError"]
    newest = numbers(latest["assetMaterializations"][0]["metadataEntries"])
    assert newest["acknowledged"] == 1, newest

    # and the page says so
    wait_for_app(
        page,
        f"{dagster_ui.base}/assets/recon/mismatches?view=checks&checkDetail={ACKNOWLEDGED_RULE}",
    )
    page.get_by_text("Evaluation result").first.wait_for(timeout=60_000)
    text = page.inner_text("body")
    assert re.search(r"\nacknowledged\n+1\n", text), text[:3000]
    with duckdb.connect(str(dagster_ui.data / "returnsync.duckdb"), read_only=True) as con:
        assert con.execute(
            "select status, acknowledgement_note from recon.mismatches where mismatch_id = ?",
            [dagster_ui.acknowledged],
        ).fetchall() == [("acknowledged", NOTE)]


# -- what finance sees --------------------------------------------------------------------------


def open_counts(data: Path) -> dict[str, int]:
    """Open mismatches per rule, read from the warehouse the run wrote (what the UI must show)."""
    with duckdb.connect(str(data / "returnsync.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select rule, count(*) from recon.mismatches where status = 'open' group by 1"
        ).fetchall()
    return {rule: dict(rows).get(rule, 0) for rule in RULES}


def open_rmas(data: Path, rule: str | None = None) -> set[str]:
    with duckdb.connect(str(data / "returnsync.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select distinct rma_number from recon.mismatches where status = 'open' "
            "and (? is null or rule = ?)",
            [rule, rule],
        )
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


def inline_table(page, label: str):
    """The table shown for metadata entry `label`: the entry's row holds a <table> itself."""
    row = page.locator("tr").filter(has=page.get_by_text(label, exact=True)).first
    return row.locator("table").first


def test_finance_sees_rule_checks_tables_and_plots(dagster_ui, page, shots):
    base, data = dagster_ui.base, dagster_ui.data
    counts = open_counts(data)
    assert {r for r, n in counts.items() if n == 0} == PASSING_RULES  # the premise
    secrets = personal_data(data / "landing")
    pages: dict[str, str] = {}  # every page text shown, scanned whole for personal data below

    # the checks: one per rule, each with its state; nothing over the page
    wait_for_app(page, f"{base}/assets/recon/mismatches?view=checks")
    for rule in RULES:
        page.get_by_text(rule, exact=True).first.wait_for(timeout=60_000)
    assert_nothing_covers(page)
    pages["checks"] = page.inner_text("body")
    listed = re.findall(rf"^(\w+)\n(?:\1\n)?{STATE}$", pages["checks"], re.M)
    expected_states = {r: ("passed" if counts[r] == 0 else "failed") for r in RULES}
    assert {r: OUTCOME[state] for r, state in listed} == expected_states, pages["checks"]

    # each check's latest evaluation: state, count, and the worst rows as a table, no click
    worst = max((r for r in RULES if counts[r]), key=lambda r: (counts[r], r))
    for rule in RULES:
        wait_for_app(page, f"{base}/assets/recon/mismatches?view=checks&checkDetail={rule}")
        page.get_by_text("Evaluation result").first.wait_for(timeout=60_000)
        text = pages[rule] = page.inner_text("body")
        state = re.search(rf"Evaluation result\n+{STATE}\n", text)
        assert state and OUTCOME[state[1]] == expected_states[rule], (rule, text)
        assert re.search(rf"\ncount\n+{counts[rule]}\n", text), (rule, counts[rule], text)
        if counts[rule]:
            table = inline_table(page, "worst_rows")
            assert table.is_visible(), rule
            assert "rma_number" in table.inner_text() and "currency" in table.inner_text()
            shown = {rma for rma in open_rmas(data, rule) if rma in table.inner_text()}
            assert shown, (rule, table.inner_text()[:2000])
            assert "Show Markdown" not in text  # nothing behind a link
        if rule == worst:
            hide_navigation(page)
            assert_nothing_covers(page)
            page.screenshot(path=str(shots / "ui-mismatch-checks.png"))

    # money at risk, plotted run over run (numeric metadata of the two CLI runs)
    wait_for_app(page, f"{base}/assets/recon/mismatches")
    page.get_by_role("button", name="Plots").first.click()
    page.locator("canvas").first.wait_for(timeout=60_000)
    plots = page.evaluate(  # each chart's title: the nearest enclosing text above its canvas
        """() => [...document.querySelectorAll('canvas')]
            .filter((c) => c.getBoundingClientRect().width > 100)
            .map((c) => { let e = c.parentElement;
                while (e && !(e.innerText || '').trim()) e = e.parentElement;
                return e ? e.innerText.trim().split('\\n')[0] : null; })"""
    )
    latest = dagster_ui.graphql(MATERIALIZATIONS, {"key": MISMATCHES})["assetOrError"]
    currencies = [
        k
        for k in numbers(latest["assetMaterializations"][0]["metadataEntries"])
        if k.startswith("money_at_risk_") and k != "money_at_risk_company"
    ]
    assert currencies, latest
    assert set(currencies) <= set(plots), (currencies, plots)  # one plot per currency
    assert "acknowledged" in plots and "open" in plots
    pages["plots"] = page.inner_text("body")

    # the report: its tables on the page, every open RMA in the mismatches table
    wait_for_app(page, f"{base}/assets/recon/mismatch_report")
    page.get_by_text("mismatches", exact=True).first.wait_for(timeout=60_000)
    assert_nothing_covers(page)
    report = inline_table(page, "mismatches")
    assert report.is_visible()
    pages["report"] = page.inner_text("body")
    hide_navigation(page)
    totals = page.locator("tr").filter(has=page.get_by_text("totals_by_currency", exact=True))
    totals.first.evaluate("(e) => e.scrollIntoView({block: 'start'})")  # totals, rules, rows
    assert_nothing_covers(page)
    page.screenshot(path=str(shots / "ui-mismatch-report.png"))
    shown_rmas = report.inner_text()
    rmas = open_rmas(data)
    assert {rma for rma in rmas if rma in shown_rmas} == rmas
    by_rule = inline_table(page, "by_rule").inner_text()
    for rule, n in counts.items():
        in_summary = re.search(rf"^{rule}\s+\w+\s+(\d+)\s", by_rule, re.M)
        assert (int(in_summary[1]) if in_summary else 0) == n, (rule, n, by_rule)

    # no page shows a customer's name or e-mail address (nor any e-mail address at all)
    for name, text in pages.items():
        assert not EMAIL.findall(text), (name, EMAIL.findall(text)[:5])
        leaked = [s for s in secrets if s in text]
        assert not leaked, (name, leaked[:5])


# -- what operations sees: stage latencies against their SLAs (DESIGN §14) ----------------------


OPERATIONS = {"path": ["operations", "stage_latencies"]}
OPERATIONS_CHECK = """query($key: AssetKeyInput!, $check: String!) {
    assetCheckExecutions(assetKey: $key, checkName: $check, limit: 1) {
        runId evaluation { success } } }"""
PLOT_TITLES = """() => [...document.querySelectorAll('canvas')]
    .filter((c) => c.getBoundingClientRect().width > 100)
    .map((c) => { let e = c.parentElement;
        while (e && !(e.innerText || '').trim()) e = e.parentElement;
        return e ? e.innerText.trim().split('\\n')[0] : null; })"""


def test_operations_sees_stage_latency_plots_and_sla_checks(dagster_ui, page, shots):
    from pipelines.lib.trace import (
        QUANTILES,
        TRANSITION_LABELS,
        TRANSITIONS,
        bottleneck,
        percentiles,
        transition_health,
    )

    with duckdb.connect(str(dagster_ui.data / "returnsync.duckdb"), read_only=True) as con:
        con.execute("set timezone = 'UTC'")
        rows = [r for r in percentiles(con) if r["n"]]
        health = transition_health(con)
    # each CLI run materialized the asset: every number has a point per run in its plot
    found = dagster_ui.graphql(MATERIALIZATIONS, {"key": OPERATIONS})["assetOrError"]
    materializations = found["assetMaterializations"]
    assert len(materializations) == 2, materializations
    latest = numbers(materializations[0]["metadataEntries"])
    assert rows
    for r in rows:
        scope = "all" if r["dimension"] == "all" else f"{r['dimension']}={r['value']}"
        for q, _ in QUANTILES:
            key = f"{r['transition']} {scope} {q}_{r['window']}_h"
            assert latest[key] == pytest.approx(r[q], abs=1e-3), key
    # one check per transition, failing exactly when its 7-day p90 or an open one is past the SLA
    for h in health:
        (execution,) = dagster_ui.graphql(
            OPERATIONS_CHECK, {"key": OPERATIONS, "check": f"{h['transition']}_within_sla"}
        )["assetCheckExecutions"]
        late = h["p90_7d_h"] is not None and h["p90_7d_h"] > h["sla_h"]
        assert execution["evaluation"]["success"] is not (late or h["overdue"] > 0), h
    assert any(h["overdue"] for h in health)  # the landscape has stalled returns: a red check
    worst, _ = bottleneck(health)
    assert worst

    # the page: the bottleneck named in the metadata, and the percentiles plotted
    wait_for_app(page, f"{dagster_ui.base}/assets/operations/stage_latencies")
    page.get_by_text("bottleneck", exact=True).first.wait_for(timeout=60_000)
    assert_nothing_covers(page)
    texts = {"metadata": page.inner_text("body")}
    assert TRANSITION_LABELS[worst] in texts["metadata"]
    hide_navigation(page)
    page.get_by_role("button", name="Plots").first.click()
    page.locator("canvas").first.wait_for(timeout=60_000)
    plots = {(title or "").lower() for title in page.evaluate(PLOT_TITLES)}
    ended_this_week = {
        r["transition"] for r in rows if r["dimension"] == "all" and r["window"] == "7d"
    }
    for t in TRANSITIONS:
        if t in ended_this_week:
            assert f"{t} all p90_7d_h" in plots, (t, sorted(plots)[:20])
    assert_nothing_covers(page)
    page.screenshot(path=str(shots / "ui-operations-latencies.png"))
    texts["plots"] = page.inner_text("body")

    # the checks tab: one check per transition
    wait_for_app(page, f"{dagster_ui.base}/assets/operations/stage_latencies?view=checks")
    for t in TRANSITIONS:
        page.get_by_text(f"{t}_within_sla", exact=True).first.wait_for(timeout=60_000)
    texts["checks"] = page.inner_text("body")

    # no customer's name or e-mail address anywhere
    secrets = personal_data(dagster_ui.data / "landing")
    for name, text in texts.items():
        assert not EMAIL.findall(text), (name, EMAIL.findall(text)[:5])
        assert not [s for s in secrets if s in text], name
