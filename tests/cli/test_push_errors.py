"""`returnsync push` against an ERP that is misconfigured, unreachable or refuses the credentials:
one line, exit 2 or 4, and not one adjustment changes state (DESIGN §6, §12)."""

from __future__ import annotations

import pytest

from pipelines.errors import EXIT_ERP, EXIT_USAGE
from pipelines.lib.warehouse import connection
from pipelines.lib.writeback import plan_adjustments
from tests.cli.helpers import clean_env, closed_port, error_line, returnsync
from tests.writeback.helpers import ReturnSpec, add_mismatch, add_return, make_warehouse

ERP = {
    "RETURNSYNC_ERP_DATABASE": "returnsync",
    "RETURNSYNC_ERP_USER": "admin",
    "RETURNSYNC_ERP_PASSWORD": "pw-9c1e-never-shown",
}


def _state(db) -> dict[str, list]:
    with connection(db, read_only=True) as con:
        return {
            table: con.execute(f"select * from writeback.{table} order by all").fetchall()
            for table in ("adjustments", "attempts", "exceptions")
        }


@pytest.fixture
def approved(tmp_path):
    """A warehouse with two auto-approved adjustments waiting to be pushed."""
    db = make_warehouse(tmp_path / "data" / "returnsync.duckdb")
    with connection(db) as con:
        for n, sku in enumerate(("P-1001", "P-1002")):
            add_return(con, ReturnSpec(f"RMA-C{n}", sku, 9001 + n, 9101 + n))
            add_mismatch(
                con, "receipt_not_posted", f"RMA-C{n}", sku, location="WH-E-STO", qty_delta="-1"
            )
        summary = plan_adjustments(con)
    assert summary.auto_approved == 2
    return db


def test_an_erp_url_that_is_not_a_url_changes_nothing(tmp_path, approved):
    before = _state(approved)
    env = clean_env(tmp_path / "data", RETURNSYNC_ERP_URL="not a url", **ERP)
    line = error_line(returnsync("push", env=env), EXIT_USAGE)
    assert "RETURNSYNC_ERP_URL must be an http(s) URL" in line
    assert _state(approved) == before


def test_an_unreachable_erp_is_exit_4_and_changes_no_adjustment(tmp_path, approved):
    before = _state(approved)
    url = f"http://127.0.0.1:{closed_port()}"
    env = clean_env(tmp_path / "data", RETURNSYNC_ERP_URL=url, **ERP)
    result = returnsync("push", "--backoff", "0", "--max-attempts", "2", env=env)
    line = error_line(result, EXIT_ERP)
    assert "ERP unreachable after 2 attempt(s)" in line and url in line
    assert "no adjustment changed" in line and ERP["RETURNSYNC_ERP_PASSWORD"] not in result.stdout
    after = _state(approved)
    assert after["adjustments"] == before["adjustments"] and after["exceptions"] == []
    # the refusal is in the audit trail of the adjustment that would have gone first, once
    assert [row[3] for row in after["attempts"]] == ["transient_error"]


@pytest.mark.erp
def test_refused_credentials_are_exit_4_and_change_no_adjustment(tmp_path, approved, tryton_server):
    before = _state(approved)
    secret = "not-the-password-51b0"
    env = clean_env(tmp_path / "data", **{**tryton_server.env(), "RETURNSYNC_ERP_PASSWORD": secret})
    result = returnsync("push", "--backoff", "0", env=env)
    line = error_line(result, EXIT_ERP)
    assert "wrong user or password" in line and repr(tryton_server.database) in line
    assert secret not in result.stdout + result.stderr
    after = _state(approved)
    assert after["adjustments"] == before["adjustments"] and after["exceptions"] == []
    assert [row[3] for row in after["attempts"]] == ["auth_error"]
