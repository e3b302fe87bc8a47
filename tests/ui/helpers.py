"""What the UI tests share (tests/ui/): the project a user runs from the command line, the
webserver reading its instance, GraphQL, and what a page must (not) show. The fixtures built from
these are in tests/ui/conftest.py: one webserver per test run, whatever module asks for it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.lib.recon.lifecycle import RULES

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


def open_mismatch(data: Path, rule: str) -> str:
    with duckdb.connect(str(data / "returnsync.duckdb"), read_only=True) as con:
        (found,) = con.execute(
            "select min(mismatch_id) from recon.mismatches where status = 'open' and rule = ?",
            [rule],
        ).fetchone()
    assert found, f"the landscape should have an open {rule}"
    return found


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


# each plot's title on an asset's Plots view: the nearest enclosing text above its canvas
_PLOT_TITLES = """() => [...document.querySelectorAll('canvas')]
    .filter((c) => c.getBoundingClientRect().width > 100)
    .map((c) => { let e = c.parentElement;
        while (e && !(e.innerText || '').trim()) e = e.parentElement;
        return e ? e.innerText.trim().split('\\n')[0] : null; })"""


def plot_titles(page) -> list[str | None]:
    """The titles of the plots drawn on the page (an asset's Metadata, Plots)."""
    page.locator("canvas").first.wait_for(timeout=60_000)
    return page.evaluate(_PLOT_TITLES)
