"""The published marts and the mismatch report carry no customer personal data (DESIGN §5).

The simulated landscape puts real-looking names in the ERP's parties and names and e-mail
addresses in every webhook payload; none of them may reach what analysts and finance read.
"""

import csv

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def personal_data(simulated_run) -> set[str]:
    con = duckdb.connect(str(simulated_run.settings.db_path), read_only=True)
    try:
        names = {r[0] for r in con.execute("select name from raw.erp_party_party").fetchall()}
        customers = con.execute(
            "select payload->>'$.customer.first_name', payload->>'$.customer.last_name', "
            "payload->>'$.customer.email' from raw.returns_saas_webhooks"
        ).fetchall()
    finally:
        con.close()
    values = {v for v in names if v} | {v for row in customers for v in row if v}
    # short first names ("Li") would match unrelated text; full names and e-mails are the risk
    return {v for v in values if len(v) >= 5}


def test_the_landscape_has_personal_data_to_leak(personal_data):
    assert len(personal_data) > 50
    assert any("@" in v for v in personal_data)


def test_published_marts_hold_none_of_it(simulated_run, personal_data):
    con = duckdb.connect(str(simulated_run.settings.analyst_db_path), read_only=True)
    try:
        text_columns = con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() "
            "where data_type = 'VARCHAR' or data_type like 'STRUCT%' or data_type = 'JSON'"
        ).fetchall()
        assert text_columns
        leaks = []
        for schema, table, column in text_columns:
            values = {
                r[0]
                for r in con.execute(
                    f'select distinct "{column}"::varchar from {schema}."{table}"'
                ).fetchall()
                if r[0]
            }
            leaks += [
                (schema, table, column, p) for p in personal_data if any(p in v for v in values)
            ]
    finally:
        con.close()
    assert leaks == []


def test_mismatch_report_holds_none_of_it(simulated_run, personal_data):
    out = CliRunner().invoke(
        main,
        [
            "report",
            "--db",
            str(simulated_run.settings.db_path),
            "--status",
            "all",
            "--format",
            "json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert len(out.output) > 100
    assert [p for p in personal_data if p in out.output] == []


def test_published_columns_hold_no_free_text_or_raw_schema(simulated_run):
    """DESIGN §12: the reason a customer typed is published only as its mapped code; nothing of
    raw, staging or meta is published. The raw reason stays in the warehouse."""
    con = duckdb.connect(str(simulated_run.settings.analyst_db_path), read_only=True)
    try:
        columns = con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() where not internal"
        ).fetchall()
        reasons = {r[0] for r in con.execute("select reason from marts.return_lines").fetchall()}
    finally:
        con.close()
    assert {schema for schema, _, _ in columns} == {"main", "marts", "recon", "meta"}
    assert {t for s, t, _ in columns if s == "meta"} == {"freshness"}  # issue 24: no ledger
    names = {f"{s}.{t}.{c}" for s, t, c in columns}
    assert "marts.return_lines.reason" in names
    assert [n for n in names if n.endswith("_raw") or "note" in n or "comment" in n] == []
    warehouse = duckdb.connect(str(simulated_run.settings.db_path), read_only=True)
    try:
        typed = {
            r[0]
            for r in warehouse.execute(
                "select distinct reason_raw from marts.return_lines where reason_raw is not null"
            ).fetchall()
        }
    finally:
        warehouse.close()
    seed = PROJECT_ROOT / "dbt_project" / "seeds" / "reason_map.csv"
    codes = {row["reason"] for row in csv.DictReader(seed.open())} | {"other"}
    assert typed - codes, "the landscape has typed reasons to withhold"
    assert reasons <= codes | {None}
