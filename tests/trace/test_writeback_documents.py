"""The ERP documents `push` sent for a return are in its trace (DESIGN §14, issue 25).

A hand-made warehouse (tests/writeback/helpers.py; the marts from their dbt contracts) with three
returns: one whose mismatch the real planner plans and that is then marked sent by push's own
writer (`_Log.sent`, the statement a successful push runs), one whose adjustment stays planned,
one without any. It is published (`pipelines.lib.publish`), and `returnsync trace` must show the
sent document, and only it, as a `written_back` event of the first return.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.erp.base import ErpDocument
from pipelines.lib.publish import publish
from pipelines.lib.warehouse import connect
from pipelines.lib.writeback import approve, plan_adjustments
from pipelines.lib.writeback.push import _Log, pending_adjustments
from pipelines.settings import DBT_PROJECT_DIR
from tests.writeback.helpers import ReturnSpec, add_mismatch, add_return, make_warehouse

REQUESTED = datetime(2026, 11, 18, 9, tzinfo=UTC)
SENT = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)


def _contract_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The marts the trace reads that the write-back helpers do not make, from their contracts."""
    marts = DBT_PROJECT_DIR / "models" / "marts"
    models = {}
    for name in ("_marts.yml", "_return_stage_latencies.yml"):
        for model in yaml.safe_load((marts / name).read_text(encoding="utf-8"))["models"]:
            models[model["name"]] = model
    for name in ("receipts", "dispositions", "inventory_adjustments", "return_stage_latencies"):
        model = models[name]
        assert model["config"]["contract"]["enforced"]
        cols = ", ".join(f'"{c["name"]}" {c["data_type"]}' for c in model["columns"])
        con.execute(f"create table if not exists marts.{name} ({cols})")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("writeback_trace")
    warehouse = make_warehouse(root / "warehouse.duckdb")
    con = connect(warehouse)
    try:
        _contract_tables(con)
        add_return(con, ReturnSpec("RMA-SENT", "P-1003", 9003, 9103, 12, Decimal(1)))
        add_return(con, ReturnSpec("RMA-WAIT", "P-1001", 9001, 9101, 11))
        add_return(con, ReturnSpec("RMA-NONE", "P-1002", 9002, 9102, 11))
        con.execute(
            "update marts.returns set rma_normalized = replace(rma_number, '-', ''), "
            "status = 'requested', requested_at = ?",
            [REQUESTED],
        )
        sent_mismatch = add_mismatch(
            con, "refund_without_credit", "RMA-SENT", amount_delta="-89.00", draft_credit_note_id=55
        )
        add_mismatch(
            con,
            "receipt_not_posted",
            "RMA-WAIT",
            "P-1001",
            location="WH-E-STO",
            qty_delta="-2",
            open_return_shipment_id=77,
        )
        plan_adjustments(con, now=REQUESTED)
        rows = con.execute(
            "select adjustment_id, mismatch_id, rma_number, status from writeback.adjustments "
            "order by rma_number"
        ).fetchall()
        assert [(r[2], r[3] in ("planned", "approved")) for r in rows] == [
            ("RMA-SENT", True),
            ("RMA-WAIT", True),
        ]
        (sent_id,) = [r[0] for r in rows if r[1] == sent_mismatch]
        if [r[3] for r in rows if r[0] == sent_id] == ["planned"]:
            approve(con, sent_id, "tester")
        (adj,) = [a for a in pending_adjustments(con) if a.adjustment_id == sent_id]
        log = _Log(con, ())
        log.now = lambda: SENT  # the push's clock, fixed so the event's time is known
        log.sent(
            adj,
            ErpDocument(
                kind="credit_note",
                erp_id=4711,
                idempotency_key="k",
                number="CN-0042",
                state="posted",
                created=True,
                amount=Decimal("-89.00"),
                model="account.invoice",
            ),
        )
    finally:
        con.close()
    target = root / "analyst.duckdb"
    result = publish(warehouse, target)
    return target, result, sent_id


def _trace(db, rma: str) -> dict:
    out = CliRunner().invoke(
        main, ["trace", rma, "--format", "json", "--db", str(db)], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    (ret,) = json.loads(out.output)["returns"]
    return ret


def test_the_published_table_holds_ids_and_documents_only(published):
    target, result, sent_id = published
    assert result.tables["recon.writeback_documents"] == 2
    assert not [c for c in result.withheld_columns + result.free_text_columns if "writeback" in c]
    con = duckdb.connect(str(target), read_only=True)
    try:
        columns = [
            r[0]
            for r in con.execute(
                "select column_name from duckdb_columns() where schema_name = 'recon' "
                "and table_name = 'writeback_documents' order by column_index"
            ).fetchall()
        ]
        sent = con.execute(
            "select rma_number, status, erp_model, erp_document_id, erp_document_number, sent_at "
            "from recon.writeback_documents where adjustment_id = ?",
            [sent_id],
        ).fetchone()
        schemas = {r[0] for r in con.execute("select schema_name from duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert columns == [
        "adjustment_id",
        "mismatch_id",
        "rma_number",
        "sku",
        "action",
        "status",
        "erp_model",
        "erp_document_id",
        "erp_document_number",
        "sent_at",
        "created_at",
        "updated_at",
    ]
    assert sent == ("RMA-SENT", "sent", "account.invoice", "4711", "CN-0042", SENT)
    assert "writeback" not in schemas


def test_trace_shows_exactly_the_sent_document(published):
    target, _, sent_id = published
    events = _trace(target, "RMA-SENT")["events"]
    written = [e for e in events if e["stage"] == "written_back"]
    assert len(written) == 1
    (event,) = written
    assert event["at"] == "2026-11-21T08:30:00Z"
    assert event["system"] == "returnsync → ERP"
    assert event["source"] == {
        "kind": "erp document",
        "name": "account.invoice CN-0042",
        "key": sent_id,
        "position": None,
    }
    assert event["detail"] == "post_draft_credit_note"  # the rule catalog's fix for the rule
    assert event["gap_h"] == pytest.approx(71.5)  # after the request at 2026-11-18 09:00
    assert [e["stage"] for e in events] == ["requested", "written_back"]


def test_unsent_and_absent_adjustments_show_none(published):
    target, _, _ = published
    for rma in ("RMA-WAIT", "RMA-NONE"):
        events = _trace(target, rma)["events"]
        assert [e["stage"] for e in events] == ["requested"], rma


def test_the_table_view_names_the_document(published):
    target, _, sent_id = published
    out = CliRunner().invoke(main, ["trace", "rma sent", "--db", str(target)])
    assert out.exit_code == 0, out.output
    (line,) = [ln for ln in out.output.splitlines() if "written_back" in ln]
    assert "account.invoice CN-0042" in line and sent_id in line
