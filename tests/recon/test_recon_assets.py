"""The Dagster side: the lifecycle asset with one check per rule, the report asset, the schedule."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import dagster as dg

from assets.recon import MISMATCHES_KEY, mismatch_report, mismatches
from pipelines.lib.recon.lifecycle import RULES
from pipelines.lib.warehouse import connection
from pipelines.resources import SettingsResource
from sensors.recon import main_job, nightly_reconciliation_schedule
from tests.recon.recon_helpers import mismatch, publish, publish_money

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
ROWS = [
    mismatch(
        "receipt_not_posted",
        "LR-1",
        "SKU-A",
        warehouse="WH-E",
        location="WH-E-STO",
        expected="2.000",
        actual="0.000",
        qty_delta=-2,
        amount_delta=-20,
    ),
    mismatch(
        "credit_amount_mismatch", "LR-2", expected="100.0000", actual="90.0000", amount_delta=-10
    ),
    mismatch(
        "credit_amount_mismatch", "LR-3", expected="10.0000", actual="12.5000", amount_delta=2.5
    ),
]
PERSONAL = ("name", "email", "address", "party", "customer")


MONEY = [  # LR-1 in GBP, LR-2 and LR-3 in EUR
    ("LR-1", "return", "GBP", None, None),
    ("LR-2", "return", "EUR", None, None),
    ("LR-2", "refund", "EUR", 100, AS_OF),
    ("LR-2", "credit", "EUR", 90, AS_OF),
    ("LR-3", "return", "EUR", None, None),
    ("LR-3", "refund", "EUR", 10, AS_OF),
    ("LR-3", "credit", "EUR", 12.5, AS_OF),
]
LINES = [("LR-1", "SKU-A", "GBP", 10, AS_OF)]


def test_lifecycle_asset_checks_and_report(settings_env):
    with connection(settings_env.db_path) as con:
        publish(con, AS_OF, ROWS)
        publish_money(con, MONEY, LINES)
    result = dg.materialize(
        [mismatches, mismatch_report], resources={"settings": SettingsResource()}
    )
    assert result.success

    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == set(RULES)
    failing = {name for name, e in checks.items() if not e.passed}
    assert failing == {"receipt_not_posted", "credit_amount_mismatch"}
    money = checks["credit_amount_mismatch"]
    assert money.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: v.value for k, v in money.metadata.items()}
    assert meta["severity"] == "high"
    assert meta["count"] == 2
    # numbers per currency (the UI plots floats and ints run over run, never strings)
    assert meta["money_at_risk_EUR"] == 12.5 and "money_at_risk_GBP" not in meta
    assert isinstance(money.metadata["worst_rows"], dg.TableMetadataValue)  # inline table
    worst = [r.data for r in meta["worst_rows"].records]
    assert [r["rma_number"] for r in worst] == ["LR-2", "LR-3"]  # the larger gap first
    assert {r["currency"] for r in worst} == {"EUR"}
    stock = {k: v.value for k, v in checks["receipt_not_posted"].metadata.items()}
    assert stock["goods_at_risk_GBP"] == 20.0 and stock["count"] == 1
    assert checks["stale_return"].passed
    assert checks["receipt_not_posted"].severity == dg.AssetCheckSeverity.WARN

    (materialization,) = [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["recon", "mismatch_report"])
    ]
    report_meta = {k: v.value for k, v in materialization.materialization.metadata.items()}
    assert report_meta["open"] == 3
    assert report_meta["money_at_risk_EUR"] == 12.5  # 10.00 + 2.50, two cases
    assert report_meta["goods_at_risk_GBP"] == 20.0
    assert not any(k.startswith("amount_at_risk") for k in report_meta)  # never across currencies
    path = report_meta["csv_path"]
    assert path.endswith("reports/mismatches_20260301T000000Z.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["rma_number"] for r in rows} == {"LR-1", "LR-2", "LR-3"}
    table = [r.data for r in report_meta["mismatches"].records]
    assert len(table) == 3 and all(r["currency"] for r in table)
    assert {r["rule"]: r["currency"] for r in table}["receipt_not_posted"] == "GBP"

    def shown(value) -> str:  # what the UI shows: a table's cells, not its repr
        if isinstance(value, dg.TableMetadataValue):
            return " ".join(str(v) for r in value.records for v in r.data.values())
        return str(value)

    everything = (
        " ".join(shown(v) for v in report_meta.values()).lower()
        + " ".join(shown(v.value) for e in checks.values() for v in e.metadata.values()).lower()
    )
    assert not any(word in everything for word in PERSONAL)

    # a second run on the same data: same ids, nothing new; corrected data resolves
    with connection(settings_env.db_path) as con:
        publish(con, datetime(2026, 3, 2, tzinfo=UTC), ROWS[1:])
    again = dg.materialize([mismatches], resources={"settings": SettingsResource()})
    (event,) = [
        m for m in again.get_asset_materialization_events() if m.asset_key == MISMATCHES_KEY
    ]
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert (meta["opened"], meta["resolved"], meta["open"]) == (0, 1, 2)
    checks = {e.check_name: e.passed for e in again.get_asset_check_evaluations()}
    assert checks["receipt_not_posted"] and not checks["credit_amount_mismatch"]


def test_main_job_and_nightly_schedule():
    assert main_job.name == "main_job"
    assert nightly_reconciliation_schedule.cron_schedule == "0 2 * * *"
    assert nightly_reconciliation_schedule.execution_timezone == "UTC"
    assert nightly_reconciliation_schedule.job_name == "main_job"


def test_recon_keys_in_the_code_location(definitions):
    keys = definitions.resolve_all_asset_keys()
    assert {
        dg.AssetKey(["recon", "recon_mismatches_current"]),
        MISMATCHES_KEY,
        dg.AssetKey(["recon", "mismatch_report"]),
    } <= set(keys)
    graph = definitions.resolve_asset_graph()
    assert {k.name for k in graph.asset_check_keys if k.asset_key == MISMATCHES_KEY} == set(RULES)
    assert definitions.resolve_job_def("main_job")
