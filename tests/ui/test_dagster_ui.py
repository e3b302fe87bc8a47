"""Finance's view, in a real browser, of runs started from the command line (DESIGN §11).

One `dagster-webserver` per test run (`dagster_ui` in tests/ui/conftest.py, shared by every UI
test; what it is built from is in tests/ui/helpers.py) reads the Dagster instance of a project
directory, exactly as `make dev` does: the instance in `<project>/.dagster_home`, the data in
`<project>/data`. The runs are the user's: `returnsync run` from the command line (no
DAGSTER_HOME: the CLI finds `.dagster_home` beside the data on its own), then `returnsync
acknowledge --note`, then `returnsync run` again. The tests check that the UI's instance holds
those runs, that the checks count the acknowledgement, that worst rows and the report are tables
on the page (no click), that money at risk is plotted, and that nothing covers the page
(Dagster's "Join the Dagster community" dialog is off: `nux: {enabled: false}`).

Headless Debian Chromium driven by Playwright (no browser download). Screenshots go to the test's
temporary folder; with UPDATE_SCREENSHOTS=1 they replace the ones under docs/.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from pipelines.lib.recon.lifecycle import RULES
from tests.ui.helpers import (
    ACKNOWLEDGED_RULE,
    CHECK_EXECUTIONS,
    EMAIL,
    MATERIALIZATIONS,
    MISMATCHES,
    NOTE,
    OUTCOME,
    PASSING_RULES,
    RUNS,
    STATE,
    assert_nothing_covers,
    hide_navigation,
    inline_table,
    numbers,
    open_counts,
    open_rmas,
    personal_data,
    plot_titles,
    wait_for_app,
)

pytestmark = pytest.mark.slow


# -- the CLI's runs are the UI's ----------------------------------------------------------------


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
        if rule == ACKNOWLEDGED_RULE:  # open rows, money at risk and an acknowledgement
            hide_navigation(page)
            assert_nothing_covers(page)
            page.screenshot(path=str(shots / "ui-mismatch-checks.png"))

    # money at risk, plotted run over run (numeric metadata of the two CLI runs)
    wait_for_app(page, f"{base}/assets/recon/mismatches")
    page.get_by_role("button", name="Plots").first.click()
    plots = plot_titles(page)
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
