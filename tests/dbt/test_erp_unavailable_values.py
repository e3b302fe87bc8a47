"""Debezium's unavailable-value placeholder in ERP staging (DESIGN §13, STACK_NOTES).

With REPLICA IDENTITY DEFAULT, an update that leaves a TOASTed value unchanged carries
`__debezium_unavailable_value` instead of the value. The cases the live stack cannot make on
demand, as change events through the real decoder (`land_batch`) and dbt's real build of the ERP
staging models, first full, then incremental:

- an invoice whose long description and long reference were sent once, then updates that change
  other columns: the previous real values stand;
- a placeholder on another table (an order line's description);
- the first event of a key already carries the placeholder (its earlier events never reached raw),
  and a key whose latest real value before the placeholder was null (an event was lost): the
  column is null and `unavailable_columns` names it, never the placeholder string;
- a placeholder in a number column cannot be decoded: a dead letter with its reason.

tests/live/test_toast.py proves the same on the live stack, with a placeholder Debezium made.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.lib import warehouse
from pipelines.lib.cdc.land import KafkaRecord, land_batch
from tests.dbt.cli import dbt

pytestmark = pytest.mark.slow

PLACEHOLDER = "__debezium_unavailable_value"
LONG = "x" * 4000  # its length, not its content, is what matters here
LONG_REF = "REF-" + "y" * 3000
INVOICE = "erp.public.account_invoice"
SALE_LINE = "erp.public.sale_line"


def _invoice(id_: int, **values) -> dict:
    row = {
        "id": id_, "number": f"INV-{id_}", "type": "out", "party": 1, "currency": 1,
        "invoice_date": 20000, "state": "draft", "reference": f"REF-{id_}",
        "description": f"note {id_}", "total_amount_cache": None,
        "create_date": 1_700_000_000_000_000, "write_date": None,
    }  # fmt: skip
    return {**row, **values}


def _sale_line(id_: int, **values) -> dict:
    return {
        "id": id_, "sale": 1, "product": 1, "quantity": 1.0, "unit_price": None,
        "description": f"line {id_}", **values,
    }  # fmt: skip


class Topic:
    """Change events as Debezium writes them (bare envelopes), offsets and LSNs in order."""

    def __init__(self) -> None:
        self.records: list[KafkaRecord] = []
        self.offsets: dict[str, int] = {}
        self.lsn = 1000

    def change(self, topic: str, op: str, after: dict, lsn: int | None = None) -> None:
        """One change; `lsn` places it among the others (a late delivery), else it is next."""
        if lsn is None:
            self.lsn += 8
            lsn = self.lsn
        value = {
            "before": None, "after": after, "op": op, "ts_ms": 1_700_000_000_000 + lsn,
            "source": {"version": "3.6.1.Final", "connector": "postgresql", "lsn": lsn,
                       "ts_ms": 1_700_000_000_000 + lsn},
        }  # fmt: skip
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        key = json.dumps({"id": after["id"]}).encode()
        self.records.append(KafkaRecord(topic, 0, offset, key, json.dumps(value).encode()))

    def take(self) -> list[KafkaRecord]:
        out, self.records = self.records, []
        return out


def _land(db, records) -> object:
    con = warehouse.connect(db)
    try:
        return land_batch(con, records, source="kafka", connectors={"erp": {}})
    finally:
        con.close()


def _query(db, sql: str) -> list[tuple]:
    con = warehouse.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


INVOICES = (
    "select invoice_id, reference, description, state, unavailable_columns "
    "from staging.stg_erp__invoices order by invoice_id"
)


def test_placeholders_become_the_previous_value_or_a_named_null(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    t = Topic()
    # 1: snapshot with long values, then two updates of other columns
    t.change(INVOICE, "r", _invoice(1, description=LONG, reference=LONG_REF))
    t.change(INVOICE, "u", _invoice(1, description=PLACEHOLDER, reference=PLACEHOLDER,
                                    state="validated"))  # fmt: skip
    # 2: its first event already carries the placeholder
    t.change(INVOICE, "u", _invoice(2, description=PLACEHOLDER, state="posted"))
    # 3: created without a description; the update that set a long one was lost
    t.change(INVOICE, "c", _invoice(3, description=None))
    t.change(INVOICE, "u", _invoice(3, description=PLACEHOLDER, state="posted"))
    # 4: no placeholder at all
    t.change(INVOICE, "c", _invoice(4))
    # another table at REPLICA IDENTITY DEFAULT
    t.change(SALE_LINE, "c", _sale_line(10, description=LONG))
    t.change(SALE_LINE, "u", _sale_line(10, description=PLACEHOLDER, quantity=2.0))
    # a placeholder where a number belongs cannot be decoded: a dead letter, not a wrong number
    t.change(INVOICE, "u", _invoice(5, total_amount_cache=PLACEHOLDER))
    landed = _land(db, t.take())
    assert landed.dead_letters == 1
    ((error,),) = _query(db, "select error from meta.dead_letters")
    assert "total_amount_cache" in error

    dbt(db, tmp_path, "run", "--select", "stg_erp__invoices", "stg_erp__sale_lines")
    assert _query(db, INVOICES) == [
        (1, LONG_REF, LONG, "validated", None),
        (2, "REF-2", None, "posted", "description"),  # its reference was sent: only one unknown
        (3, "REF-3", None, "posted", "description"),
        (4, "REF-4", "note 4", "draft", None),
    ]
    assert _query(
        db, "select description, quantity, unavailable_columns from staging.stg_erp__sale_lines"
    ) == [(LONG, 2, None)]

    # incremental: another update of invoice 1 (placeholders again) and the lost value of 3
    # arriving late (its lsn is before the placeholder's)
    t.change(INVOICE, "u", _invoice(1, description=PLACEHOLDER, reference=PLACEHOLDER,
                                    state="posted"))  # fmt: skip
    t.change(INVOICE, "u", _invoice(3, description=LONG), lsn=1036)  # between 3's c and u
    assert _land(db, t.take()).dead_letters == 0
    dbt(db, tmp_path, "run", "--select", "stg_erp__invoices", "stg_erp__sale_lines")
    rows = _query(db, INVOICES)
    assert rows[0] == (1, LONG_REF, LONG, "posted", None)
    assert rows[2] == (3, "REF-3", LONG, "posted", None)
    # the placeholder string is nowhere in ERP staging
    for (table,) in _query(
        db,
        "select table_name from information_schema.tables "
        "where table_schema = 'staging' and table_name like 'stg_erp__%'",
    ):
        columns = _query(
            db,
            "select column_name from information_schema.columns where table_schema = 'staging' "
            f"and table_name = '{table}' and data_type = 'VARCHAR'",
        )
        for (column,) in columns:
            found = _query(
                db, f"select count(*) from staging.{table} where \"{column}\" = '{PLACEHOLDER}'"
            )
            assert found == [(0,)], (table, column)


def _receipt(id_: int, **values) -> dict:
    return {
        "receipt_id": id_, "dc_code": "DC-EAST", "rma_number": f"RMA-{id_}",
        "tracking_number": None, "sku": "SKU-1", "lot": None, "serial": None,
        "quantity": "1.000", "received_at": "2026-03-01T10:00:00Z", "license_plate": f"LP-{id_}",
        **values,
    }  # fmt: skip


def test_wms_staging_keeps_the_previous_value_too(tmp_path):
    """The WMS is captured by Debezium too (DESIGN §2.3): the same placeholder, the same rule."""
    db = tmp_path / "warehouse.duckdb"
    t = Topic()
    long_plate = "LP-" + "z" * 3000
    t.change("wms.public.receipts", "r", {**_receipt(1, license_plate=long_plate), "id": 1})
    t.change(
        "wms.public.receipts", "u",
        {**_receipt(1, license_plate=PLACEHOLDER, quantity="2.000"), "id": 1},
    )  # fmt: skip
    t.change("wms.public.receipts", "u", {**_receipt(2, serial=PLACEHOLDER), "id": 2})
    con = warehouse.connect(db)
    try:
        land_batch(con, [_without_id(r) for r in t.take()], source="kafka",
                   connectors={"wms": {"decimal.handling.mode": "string"}})  # fmt: skip
    finally:
        con.close()
    dbt(db, tmp_path, "run", "--select", "stg_wms__receipts")
    assert _query(
        db,
        "select receipt_id, license_plate, serial, quantity, unavailable_columns "
        "from staging.stg_wms__receipts order by receipt_id",
    ) == [(1, long_plate, None, 2, None), (2, "LP-2", None, 1, "serial")]


def _without_id(record: KafkaRecord) -> KafkaRecord:
    """`Topic.change` keys by `id`; a WMS row's key is its own primary key and has no `id`."""
    value = json.loads(record.value)
    del value["after"]["id"]
    pk = "receipt_id"
    key = json.dumps({pk: value["after"][pk]}).encode()
    return dataclasses.replace(record, key=key, value=json.dumps(value).encode())
