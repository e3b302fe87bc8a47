"""`returnsync report` through click's CliRunner, on a warehouse built in the test."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.recon.lifecycle import acknowledge, apply_lifecycle
from tests.recon.recon_helpers import mismatch, publish

T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 2, tzinfo=UTC)
COLUMNS = [
    "mismatch_id",
    "rule",
    "severity",
    "rma_number",
    "sku",
    "warehouse",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
    "first_seen_at",
    "last_seen_at",
    "status",
    "resolved_at",
]

NOT_POSTED = mismatch(
    "receipt_not_posted",
    "LR-1",
    "SKU-A",
    warehouse="WH-E",
    location="WH-E-STO",
    expected="2.000",
    actual="0.000",
    qty_delta=-2,
)
SHORT = mismatch(
    "credit_amount_mismatch", "LR-2", expected="100.0000", actual="90.0000", amount_delta=-10
)
STALE = mismatch("stale_return", "AMZ-3", warehouse="WH-W")
UNMAPPED = mismatch("unmapped_sku", "B2B-4", "CH-SKU-9")


@pytest.fixture
def warehouse(tmp_path):
    """T1: four mismatches; T2: the stock posting was made (resolved), one acknowledged."""
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("set timezone = 'UTC'")
    publish(con, T1, [NOT_POSTED, SHORT, STALE, UNMAPPED])
    apply_lifecycle(con)
    publish(con, T2, [SHORT, STALE, UNMAPPED])
    apply_lifecycle(con)
    acknowledge(con, UNMAPPED["mismatch_id"], by="catalogue.team")
    con.close()
    return path


def invoke(*args):
    result = CliRunner().invoke(main, ["report", *args])
    return result


def rows_of(output: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(output)))


def test_default_is_open_mismatches_as_csv_worst_first(warehouse):
    result = invoke("--db", str(warehouse))
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split(",")
    assert header[: len(COLUMNS)] == COLUMNS
    rows = rows_of(result.output)
    assert [(r["rule"], r["rma_number"], r["sku"]) for r in rows] == [
        ("credit_amount_mismatch", "LR-2", ""),  # high severity first
        ("stale_return", "AMZ-3", ""),
    ]
    assert rows[0]["amount_delta"] == "-10.0000"
    assert rows[0]["first_seen_at"].startswith("2026-03-01T00:00:00")
    assert rows[0]["last_seen_at"].startswith("2026-03-02T00:00:00")
    assert {r["status"] for r in rows} == {"open"}


def test_status_all_still_lists_the_resolved_mismatch(warehouse):
    rows = rows_of(invoke("--db", str(warehouse), "--status", "all").output)
    by_rule = {r["rule"]: r for r in rows}
    assert len(rows) == 4
    assert by_rule["receipt_not_posted"]["status"] == "resolved"
    assert by_rule["receipt_not_posted"]["resolved_at"].startswith("2026-03-02")
    assert by_rule["unmapped_sku"]["status"] == "acknowledged"
    resolved = rows_of(invoke("--db", str(warehouse), "--status", "resolved").output)
    assert [r["mismatch_id"] for r in resolved] == [NOT_POSTED["mismatch_id"]]


def test_rule_filter_and_json_and_markdown(warehouse):
    result = invoke("--db", str(warehouse), "--rule", "stale_return", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(d["rule"], d["rma_number"], d["warehouse"]) for d in data] == [
        ("stale_return", "AMZ-3", "WH-W")
    ]
    md = invoke("--db", str(warehouse), "--format", "md", "--status", "all").output
    lines = md.strip().splitlines()
    assert lines[0].startswith("| mismatch_id | rule | severity |")
    assert len(lines) == 2 + 4


def test_missing_warehouse_or_table_is_a_clear_error(tmp_path):
    result = invoke("--db", str(tmp_path / "nope.duckdb"))
    assert result.exit_code != 0
    assert "no warehouse at" in result.output
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    result = invoke("--db", str(empty))
    assert result.exit_code != 0
    assert "recon.mismatches is missing" in result.output


def test_report_opens_the_warehouse_read_only(warehouse):
    # a read-only reader works while another process could write: DuckDB refuses writes on it
    before = warehouse.stat().st_mtime_ns
    assert invoke("--db", str(warehouse)).exit_code == 0
    assert warehouse.stat().st_mtime_ns == before


def test_unknown_rule_is_rejected(warehouse):
    result = invoke("--db", str(warehouse), "--rule", "nope")
    assert result.exit_code == 2


def test_acknowledge_command_then_report(warehouse):
    from pipelines.cli.acknowledge import acknowledge as acknowledge_command

    runner = CliRunner()
    result = runner.invoke(
        acknowledge_command, [SHORT["mismatch_id"], "--by", "finance.ops", "--db", str(warehouse)]
    )
    assert result.exit_code == 0, result.output
    assert "acknowledged 1" in result.output
    rows = rows_of(invoke("--db", str(warehouse), "--status", "acknowledged").output)
    assert {r["mismatch_id"]: r["acknowledged_by"] for r in rows} == {
        SHORT["mismatch_id"]: "finance.ops",
        UNMAPPED["mismatch_id"]: "catalogue.team",
    }
    again = runner.invoke(
        acknowledge_command, ["nope", "--by", "finance.ops", "--db", str(warehouse)]
    )
    assert again.exit_code != 0 and "nope" in again.output
