"""A source that fails does not stop the others (DESIGN §12), through the real `returnsync run`:
the ERP pull against a closed port (unreachable) or a real Tryton that refuses the password, and
a file reader that crashes (a bug, injected). The run lands and reconciles the rest, marks the
source stale in `meta.source_status`, the summary and `returnsync report`, plans and
auto-approves nothing, and exits 1 with one line on standard error."""

from __future__ import annotations

import json

import pytest

from pipelines.errors import EXIT_FAILED
from pipelines.lib import source_status
from pipelines.lib.warehouse import connection
from pipelines.lib.writeback import plan_adjustments
from tests.cli.helpers import clean_env, closed_port, error_line, returnsync

pytestmark = pytest.mark.slow  # two real runs of the main job

AS_OF = "2026-11-01T00:00:00Z"
CRASHED = "shopify_refunds"
ERP = {
    "RETURNSYNC_ERP_PULL": "true",
    "RETURNSYNC_ERP_DATABASE": "returnsync",
    "RETURNSYNC_ERP_USER": "admin",
    "RETURNSYNC_ERP_PASSWORD": "pw-4f1d-never-shown",
}


def _counts(db) -> dict[str, int]:
    with connection(db, read_only=True) as con:
        return {
            table: con.execute(f"select count(*) from {table}").fetchall()[0][0]
            for table in (
                "raw.shopify_refunds",
                "raw.amazon_returns",
                "raw.returns_saas_webhooks",
                "raw.wms_receipts",
                "marts.returns",
                "recon.mismatches",
                "writeback.adjustments",
            )
        }


def _status(db) -> dict[str, tuple[str, str | None]]:
    with connection(db, read_only=True) as con:
        return {s.source: (s.status, s.error) for s in source_status.statuses(con)}


@pytest.fixture(scope="module")
def landscape(tmp_path_factory):
    root = tmp_path_factory.mktemp("degraded")
    landing = root / "landing"
    made = returnsync(
        "simulate", "--returns", "40", "--seed", "3", "--out", str(landing), "--as-of", AS_OF,
        "--quiet", env=clean_env(root / "unused"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    # paths a run must not read, and must say it did not (DESIGN §12)
    (landing / "cdc" / "x.ndjson").mkdir()
    (landing / "b2b" / "passwd.csv").symlink_to("/etc/passwd")
    return root, landing


@pytest.fixture(scope="module")
def outage(landscape):
    """A first run with the ERP pull unreachable and the Shopify reader crashing."""
    root, landing = landscape
    url = f"http://127.0.0.1:{closed_port()}"
    env = clean_env(root / "data", RETURNSYNC_ERP_URL=url, **ERP)
    result = returnsync(
        "run", "--quiet", "--landing", str(landing), "--as-of", AS_OF,
        env=env, fault=("crash-source", CRASHED),
    )  # fmt: skip
    return root / "data" / "returnsync.duckdb", url, result


def test_an_unreachable_erp_and_a_crashing_reader_leave_the_rest_reconciled(outage):
    db, url, result = outage
    line = error_line(result, EXIT_FAILED)
    assert line.startswith("returnsync: error: partial run: stale source(s) ")
    assert f"erp_pull (ErpTransientError: cannot reach Tryton at {url}" in line
    assert f"{CRASHED} (RuntimeError: injected crash of the {CRASHED} reader)" in line
    assert "nothing was planned or auto-approved" in line
    assert ERP["RETURNSYNC_ERP_PASSWORD"] not in result.stdout + result.stderr

    counts = _counts(db)
    assert counts["raw.shopify_refunds"] == 0  # the crashed source landed nothing...
    for table in ("raw.amazon_returns", "raw.returns_saas_webhooks", "raw.wms_receipts"):
        assert counts[table] > 0, table  # ...every other one did,
    assert counts["marts.returns"] > 0 and counts["recon.mismatches"] > 0  # and was reconciled
    assert counts["writeback.adjustments"] == 0  # nothing planned, nothing auto-approved

    status = _status(db)
    assert status["erp_pull"][0] == status[CRASHED][0] == "stale"
    assert status["cdc"] == ("ok", None) and status["amazon_returns"] == ("ok", None)
    assert "== returnsync summary" in result.stdout  # partial, not failed: the summary is there
    summary = result.stdout.split("STALE sources", 1)[1]
    assert "erp_pull" in summary and CRASHED in summary
    not_read = result.stdout.split("not read (2 path(s)", 1)[1].splitlines()[1:3]
    assert not_read == [
        "  b2b/passwd.csv: symbolic link: not followed",
        "  cdc/x.ndjson: not read: a directory",
    ], result.stdout


def test_report_names_every_stale_source(outage, tmp_path):
    db, _, _ = outage
    result = returnsync("report", "--db", str(db), "--format", "json", env=clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    stale = {s for s, (status, _) in _status(db).items() if status == "stale"}
    warnings = result.stderr.splitlines()
    assert len(warnings) == len(stale) and "Traceback" not in result.stderr
    for source in stale:
        (named,) = [w for w in warnings if f"source {source} is stale" in w]
        assert named.startswith("returnsync: warning: ")
    assert set(json.loads(result.stdout)) >= {"rows", "totals_by_currency"}  # clean JSON


@pytest.mark.erp
def test_refused_erp_credentials_make_the_pull_stale_and_the_rest_recover(outage, tryton_server):
    db, _, _ = outage
    root = db.parent.parent
    env = clean_env(
        root / "data", **{**ERP, **tryton_server.env(), "RETURNSYNC_ERP_PASSWORD": "wrong-7a2c"}
    )
    landing = root / "landing"
    # the Shopify files come back (no crash this time): that source lands and is ok again
    result = returnsync("run", "--quiet", "--landing", str(landing), "--as-of", AS_OF, env=env)
    line = error_line(result, EXIT_FAILED)
    assert "stale source(s) erp_pull (" in line and "wrong user or password" in line
    assert CRASHED not in line and "wrong-7a2c" not in result.stdout + result.stderr
    status = _status(db)
    assert status[CRASHED] == ("ok", None) and status["erp_pull"][0] == "stale"
    counts = _counts(db)
    assert counts["raw.shopify_refunds"] > 0 and counts["writeback.adjustments"] == 0

    # once the ERP pull is healthy again (here: turned off), planning resumes
    with connection(db) as con:
        source_status.forget(con, source_status.ERP_PULL)
        assert plan_adjustments(con).auto_approved > 0
