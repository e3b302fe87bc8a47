"""Write-back in Dagster: the planning asset, the push job, and the sensor's batches."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg
import pytest

from assets.writeback import adjustments as adjustments_asset
from assets.writeback import push_adjustments_job
from pipelines.lib.erp import document_kind
from pipelines.lib.warehouse import connection
from pipelines.lib.writeback import approve
from pipelines.resources import SettingsResource
from sensors.writeback import adjustment_push_sensor
from tests.writeback.helpers import (
    ReturnSpec,
    add_mismatch,
    add_return,
    adjustments,
    make_warehouse,
)


@pytest.fixture
def db(tmp_path, monkeypatch):
    for var in (
        "RETURNSYNC_ERP_URL",
        "RETURNSYNC_ERP_DATABASE",
        "RETURNSYNC_ERP_USER",
        "RETURNSYNC_ERP_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    path = make_warehouse(tmp_path / "w.duckdb")
    with connection(path) as con:
        add_return(con, ReturnSpec("RMA-S1", "P-1001", 9001, 9101, 11))
        add_return(con, ReturnSpec("RMA-S2", "P-1002", 9002, 9102, 11))
        add_mismatch(
            con, "receipt_not_posted", "RMA-S1", "P-1001", location="WH-E-STO", qty_delta="-1"
        )
        add_mismatch(
            con, "receipt_not_posted", "RMA-S2", "P-1002", location="WH-E-STO", qty_delta="-40"
        )
    return path


def _resources(db) -> dict:
    return {"settings": SettingsResource(db_path=str(db))}


def _tick(db):
    context = dg.build_sensor_context(resources=_resources(db))
    return adjustment_push_sensor(context)


def test_the_asset_plans_and_reports_counts(db):
    result = dg.materialize([adjustments_asset], resources=_resources(db))
    assert result.success
    (materialization,) = result.asset_materializations_for_node("writeback__adjustments")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["planned"], meta["auto_approved"], meta["waiting"]) == (2, 1, 1)
    assert (meta["status_approved"], meta["status_planned"]) == (1, 1)
    assert "RMA-S2" in meta["waiting_for_approval"] and "RMA-S1" not in meta["waiting_for_approval"]
    again = dg.materialize([adjustments_asset], resources=_resources(db))
    (materialization,) = again.asset_materializations_for_node("writeback__adjustments")
    assert materialization.metadata["planned"].value == 0


def test_sensor_launches_each_batch_once_with_a_run_key_from_the_batch(db, monkeypatch):
    assert isinstance(_tick(db), dg.SkipReason)  # no ERP configured
    monkeypatch.setenv("RETURNSYNC_ERP_URL", "http://127.0.0.1:9")
    assert "no approved" in _tick(db).skip_message  # nothing planned yet
    dg.materialize([adjustments_asset], resources=_resources(db))

    first = _tick(db)
    assert isinstance(first, dg.RunRequest)
    with connection(db, read_only=True) as con:
        rows = adjustments(con)
    approved = sorted(r["adjustment_id"] for r in rows.values() if r["status"] == "approved")
    assert first.run_config["ops"]["push_adjustments_op"]["config"]["adjustment_ids"] == approved
    assert _tick(db).run_key == first.run_key  # the same batch: the same key, launched once

    waiting = next(r["adjustment_id"] for r in rows.values() if r["status"] == "planned")
    with connection(db) as con:
        approve(con, waiting, by="alice")
    second = _tick(db)
    assert second.run_key != first.run_key
    assert len(second.run_config["ops"]["push_adjustments_op"]["config"]["adjustment_ids"]) == 2

    with connection(db) as con:
        con.execute("update writeback.adjustments set status = 'sent'")
    assert "no approved" in _tick(db).skip_message


def test_the_sensor_skips_while_the_warehouse_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("RETURNSYNC_ERP_URL", "http://127.0.0.1:9")
    result = _tick(tmp_path / "none.duckdb")
    assert "no warehouse" in result.skip_message


@pytest.mark.erp
def test_the_push_job_sends_the_sensors_batch(db, tryton_server, monkeypatch, tmp_path):
    for var, value in tryton_server.env().items():
        monkeypatch.setenv(var, value)
    client = tryton_server.adapter().client
    from tests.fixtures.tryton_server import create_sale, return_sale, sale_lines

    sale = create_sale(client, "#WB-D", [("P-1005", 3, Decimal("7.00"))])
    returned = return_sale(client, sale, rma="RMA-WB-D")
    (line,) = sale_lines(client, returned)
    (party,) = client.call("sale.sale", "read", [returned], ["party"])
    job_db = make_warehouse(tmp_path / "job.duckdb")
    with connection(job_db) as con:
        add_return(con, ReturnSpec("RMA-J1", "P-1005", returned, line["id"], party["party"]))
        add_mismatch(
            con, "receipt_not_posted", "RMA-J1", "P-1005", location="WH-C-STO", qty_delta="-2"
        )
    dg.materialize([adjustments_asset], resources=_resources(job_db))
    request = _tick(job_db)
    config = request.run_config
    config["ops"]["push_adjustments_op"]["config"]["backoff_seconds"] = 0.0
    result = push_adjustments_job.execute_in_process(
        run_config=config, resources=_resources(job_db)
    )
    assert result.success
    assert result.output_for_node("push_adjustments_op")["created"] == 1
    with connection(job_db, read_only=True) as con:
        (row,) = adjustments(con).values()
    assert row["status"] == "sent"
    assert (
        tryton_server.adapter()
        .find_document(document_kind(row["action"]), row["idempotency_key"])
        .state
        == "done"
    )
    again = push_adjustments_job.execute_in_process(run_config=config, resources=_resources(job_db))
    assert again.output_for_node("push_adjustments_op")["created"] == 0
