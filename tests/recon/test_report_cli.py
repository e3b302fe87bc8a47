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
COLUMNS = [  # DESIGN §11, issue 21: exactly these, in this order
    "case_id",
    "mismatch_id",
    "rule",
    "rule_description",
    "severity",
    "rma_number",
    "sku",
    "warehouse",
    "location",
    "currency",
    "expected",
    "actual",
    "amount_delta",
    "qty_delta",
    "money_at_risk",
    "goods_at_risk",
    "money_at_risk_company",
    "suggested_action",
    "adjustment_id",
    "adjustment_status",
    "first_seen_at",
    "last_seen_at",
    "status",
    "acknowledged_by",
    "acknowledged_at",
    "acknowledgement_note",
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
    header = result.stdout.splitlines()[0].split(",")
    assert header == COLUMNS
    rows = rows_of(result.stdout)
    assert [(r["rule"], r["rma_number"], r["sku"]) for r in rows] == [
        ("credit_amount_mismatch", "LR-2", ""),  # high severity first
        ("stale_return", "AMZ-3", ""),
    ]
    assert rows[0]["amount_delta"] == "-10.0000"
    assert rows[0]["first_seen_at"].startswith("2026-03-01T00:00:00")
    assert rows[0]["last_seen_at"].startswith("2026-03-02T00:00:00")
    assert {r["status"] for r in rows} == {"open"}


def test_status_all_still_lists_the_resolved_mismatch(warehouse):
    rows = rows_of(invoke("--db", str(warehouse), "--status", "all").stdout)
    by_rule = {r["rule"]: r for r in rows}
    assert len(rows) == 4
    assert by_rule["receipt_not_posted"]["status"] == "resolved"
    assert by_rule["receipt_not_posted"]["last_seen_at"].startswith("2026-03-01")
    # a resolved mismatch puts nothing at risk
    assert by_rule["receipt_not_posted"]["goods_at_risk"] == ""
    assert by_rule["unmapped_sku"]["status"] == "acknowledged"
    resolved = rows_of(invoke("--db", str(warehouse), "--status", "resolved").stdout)
    assert [r["mismatch_id"] for r in resolved] == [NOT_POSTED["mismatch_id"]]


def test_rule_filter_and_json_and_markdown(warehouse):
    result = invoke("--db", str(warehouse), "--rule", "stale_return", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"rows", "totals_by_currency"}  # no rates landed: no totals_company
    assert [(d["rule"], d["rma_number"], d["warehouse"]) for d in data["rows"]] == [
        ("stale_return", "AMZ-3", "WH-W")
    ]
    assert list(data["rows"][0]) == COLUMNS
    md = invoke("--db", str(warehouse), "--format", "md", "--status", "all").stdout
    table = md.strip().split("\n\n")[0].splitlines()
    assert table[0].startswith("| case_id | mismatch_id | rule | rule_description |")
    assert len(table) == 2 + 4
    assert "| currency | money_at_risk | goods_at_risk |" in md


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
    rows = rows_of(invoke("--db", str(warehouse), "--status", "acknowledged").stdout)
    assert {r["mismatch_id"]: r["acknowledged_by"] for r in rows} == {
        SHORT["mismatch_id"]: "finance.ops",
        UNMAPPED["mismatch_id"]: "catalogue.team",
    }
    again = runner.invoke(
        acknowledge_command, ["nope", "--by", "finance.ops", "--db", str(warehouse)]
    )
    assert again.exit_code != 0  # an unknown id is named (in the output or the one-line error)
    assert "nope" in again.output + str(again.exception)


# --- spreadsheet safety (DESIGN §11): formula-looking text gets a leading ', numbers stay ---

HYPERLINK = '=HYPERLINK("http://x","y")'


def test_csv_cells_a_spreadsheet_would_run_start_with_a_quote(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("set timezone = 'UTC'")
    hostile = mismatch("unmapped_sku", HYPERLINK, "@SUM(A1)", warehouse="-WH")
    publish(con, T1, [hostile, SHORT])
    apply_lifecycle(con)
    con.close()
    out = invoke("--db", str(path)).stdout
    rows = {r["rule"]: r for r in rows_of(out)}
    assert (rows["unmapped_sku"]["rma_number"], rows["unmapped_sku"]["sku"]) == (
        "'" + HYPERLINK,
        "'@SUM(A1)",
    )
    assert rows["unmapped_sku"]["warehouse"] == "'-WH"
    assert rows["credit_amount_mismatch"]["amount_delta"] == "-10.0000"  # a number stays one
    # JSON is not opened by spreadsheets: it keeps the value as it came
    data = json.loads(invoke("--db", str(path), "--format", "json").stdout)
    assert {d["rma_number"] for d in data["rows"]} == {HYPERLINK, "LR-2"}


@pytest.fixture(scope="module")
def hostile_landscape(tmp_path_factory, dbt_manifest):
    """A simulated landscape plus a B2B credit request file whose request ids and SKUs are
    formulas, built by the real main job (~40 s)."""
    from pipelines.runner import run_main_job
    from pipelines.settings import Settings

    root = tmp_path_factory.mktemp("hostile_csv")
    landing = root / "landing"
    as_of = "2026-11-01T00:00:00Z"
    made = CliRunner().invoke(
        main,
        ["simulate", "--returns", "40", "--seed", "3", "--out", str(landing), "--as-of", as_of,
         "--quiet"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    header = (landing / "b2b" / "credit_requests_2026-10-05.csv").read_text().splitlines()[0]
    assert header.startswith("request_id,") and ",sku," in header
    rows = [
        [HYPERLINK, "ACC-000009", "PO-1", "SO0000025", "@SUM(A1)", "1", "10.00", "GBP", "DEF",
         "2026-10-11T15:28:09Z", "approved", "2026-10-13T12:16:18Z"],
        ["-CR-77", "ACC-000009", "PO-2", "SO0000025", "+B2B-X", "1", "10.00", "GBP", "DEF",
         "2026-10-11T15:28:09Z", "approved", "2026-10-13T12:16:18Z"],
    ]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header.split(","))
    writer.writerows(rows)
    (landing / "b2b" / "credit_requests_2026-10-20.csv").write_text(buffer.getvalue())
    settings = Settings.from_env(env={}, base_dir=root, landing_dir=landing)
    assert run_main_job(settings, as_of=as_of, quiet=True), "the main job failed"
    return settings


HOSTILE_CELLS = {("'" + HYPERLINK, "'@SUM(A1)"), ("'-CR-77", "'+B2B-X")}


def unmapped(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["rma_number"], r["sku"]) for r in rows if r["rule"] == "unmapped_sku"}


@pytest.mark.slow
def test_a_hostile_b2b_request_reaches_every_csv_escaped(hostile_landscape, tmp_path):
    settings = hostile_landscape
    # returnsync report --format csv
    report = invoke("--db", str(settings.db_path), "--format", "csv")
    assert report.exit_code == 0, report.output
    rows = rows_of(report.stdout)
    assert unmapped(rows) >= HOSTILE_CELLS
    amounts = [r["amount_delta"] for r in rows if r["amount_delta"]]
    assert any(a.startswith("-") for a in amounts)  # negative amounts are there ...
    assert all(not a.startswith("'") for a in amounts)  # ... and stay numbers
    # the reports/*.csv of the recon report asset
    (written,) = (settings.data_dir / "reports").glob("mismatches_*.csv")
    assert unmapped(rows_of(written.read_text())) >= HOSTILE_CELLS
    # returnsync sql --format csv on the published copy, to stdout and to --output
    query = "select rule, rma_number, sku, amount_delta from recon.mismatches order by all"
    db = ["--db", str(settings.analyst_db_path)]
    shown = CliRunner().invoke(main, ["sql", *db, "--format", "csv", query])
    assert shown.exit_code == 0, shown.output
    assert unmapped(rows_of(shown.output)) >= HOSTILE_CELLS
    target = tmp_path / "export.csv"
    exported = CliRunner().invoke(main, ["sql", *db, "--format", "csv", "-o", str(target), query])
    assert exported.exit_code == 0, exported.output
    assert unmapped(rows_of(target.read_text())) >= HOSTILE_CELLS
    # the values themselves are stored as they came: only the CSV cells are escaped
    raw = CliRunner().invoke(main, ["sql", *db, "--format", "table", query])
    assert "@SUM(A1)" in raw.output and "'@SUM(A1)" not in raw.output
