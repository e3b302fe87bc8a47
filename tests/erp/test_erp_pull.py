"""Batch pull from the real Tryton server into raw.erp_* (DESIGN §8.2), same shape as CDC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest

from pipelines.lib import warehouse
from pipelines.lib.erp.pull import PULL_MODELS, pull_erp
from tests.fixtures.tryton_server import create_sale, return_sale, sale_lines

pytestmark = pytest.mark.erp


@pytest.fixture
def con(tmp_path):
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


def _rows(con, sql: str, params=None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def test_pull_lands_reference_data_in_the_cdc_shape(con, tryton_adapter):
    summary = pull_erp(con, tryton_adapter)
    assert {m.model for m in summary.models} == set(PULL_MODELS)
    assert summary.dead_letters == 0

    products = dict(_rows(con, "select code, _op from raw.erp_product_product"))
    assert {f"P-100{i}" for i in range(1, 7)} <= set(products)
    assert set(products.values()) == {"r"}
    assert {c for (c,) in _rows(con, "select code from raw.erp_currency_currency")} >= {
        "EUR", "USD", "GBP",
    }  # fmt: skip

    locations = {
        code: (loc_id, parent, kind)
        for code, loc_id, parent, kind in _rows(
            con, "select code, id, parent, type from raw.erp_stock_location"
        )
    }
    for wh in ("WH-E", "WH-W", "WH-C"):
        assert locations[wh][2] == "warehouse"
        for suffix in ("STO", "RFB", "SCR", "RTV"):
            assert locations[f"{wh}-{suffix}"][1:] == (locations[wh][0], "storage")

    meta = _rows(
        con,
        "select distinct _topic, _partition, _op, _is_tombstone, _source_lsn is null "
        "from raw.erp_stock_location",
    )
    assert meta == [("erp.public.stock_location", -1, "r", False, True)]
    key, extra = _rows(con, "select _key, _extra from raw.erp_stock_location limit 1")[0]
    assert set(json.loads(key)) == {"id"} and "write_date" in json.loads(extra)
    offsets = [o for (o,) in _rows(con, "select _offset from raw.erp_stock_location order by 1")]
    assert offsets == list(range(len(offsets)))
    ledger = _rows(con, "select count(*) from meta.erp_pull_ledger where model = 'stock.location'")
    assert ledger == [(len(offsets),)]


def test_a_second_pull_lands_nothing_and_a_change_lands_once(con, tryton_adapter):
    first = pull_erp(con, tryton_adapter, models=["party.party", "product.product"])
    assert first.landed >= 7
    total = _rows(con, "select count(*) from raw.erp_party_party")[0][0]

    again = pull_erp(con, tryton_adapter, models=["party.party", "product.product"])
    assert (
        again.landed == 0 and again.pulled > 0
    )  # the watermark overlap re-reads, the ledger drops
    assert _rows(con, "select count(*) from raw.erp_party_party")[0][0] == total

    client = tryton_adapter.client
    (party_id,) = client.call("party.party", "search", [("code", "=", "C-0001")], 0, 1, None)
    renamed = f"Renamed Customer {datetime.now():%H%M%S%f}"
    client.call("party.party", "write", [party_id], {"name": renamed})

    changed = pull_erp(con, tryton_adapter, models=["party.party"])
    assert changed.landed == 1
    versions = _rows(
        con,
        "select name, _offset, _changed_at from raw.erp_party_party where id = ? order by _offset",
        [party_id],
    )
    assert versions[-1][0] == renamed and len(versions) >= 2
    assert versions[-1][2] > versions[-2][2]  # the new write_date is the change time
    assert pull_erp(con, tryton_adapter, models=["party.party"]).landed == 0


def test_sales_returns_credit_notes_and_moves_arrive_as_ids_and_references(con, tryton_adapter):
    client = tryton_adapter.client
    sale_id = create_sale(client, "#P-2001", [("P-1004", 3, Decimal("34.99"))], currency_code="USD")
    return_id = return_sale(client, sale_id, rma="RMA-P-1")
    (line,) = sale_lines(client, return_id)
    credit = tryton_adapter.create_credit_note(
        "adj-pull-credit", return_line_ref=line["id"], party="C-0001", currency_code="USD",
        lines=[("P-1004", 1, Decimal("34.99"))], description="pull test",
    )  # fmt: skip
    posting = tryton_adapter.create_stock_move(
        "adj-pull-stock", return_line_ref=line["id"], product_code="P-1004", quantity=1,
        to_location_code="WH-W-RFB",
    )  # fmt: skip

    summary = pull_erp(con, tryton_adapter)
    assert summary.dead_letters == 0

    (order,) = _rows(
        con, "select reference, origin, state from raw.erp_sale_sale where id = ?", [return_id]
    )
    assert order == ("RMA-P-1", f"sale.sale,{sale_id}", "processing")
    (sold_line,) = _rows(
        con, "select sale, quantity, unit_price from raw.erp_sale_line where id = ?", [line["id"]]
    )
    assert sold_line == (return_id, -3.0, Decimal("34.99"))

    (invoice,) = _rows(
        con,
        "select i.type, i.state, i.reference, i.total_amount_cache, c.code "
        "from raw.erp_account_invoice i join raw.erp_currency_currency c on c.id = i.currency "
        "where i.id = ?",
        [credit.erp_id],
    )
    assert invoice == ("out", "posted", "adj-pull-credit", Decimal("-34.99"), "USD")
    (inv_line,) = _rows(
        con,
        "select quantity, unit_price, origin from raw.erp_account_invoice_line where invoice = ?",
        [credit.erp_id],
    )
    assert inv_line == (-1.0, Decimal("34.99"), f"sale.line,{line['id']}")

    (move,) = _rows(
        con,
        "select m.state, m.quantity, m.shipment, m.origin, l.code from raw.erp_stock_move m "
        "join raw.erp_stock_location l on l.id = m.to_location where m.id = ?",
        [posting.line_ids[0]],
    )
    assert move == (
        "done", 1.0, f"stock.shipment.internal,{posting.erp_id}", f"sale.line,{line['id']}",
        "WH-W-RFB",
    )  # fmt: skip
    (shipment,) = _rows(
        con,
        "select s.reference, l.code from raw.erp_stock_shipment_out_return s "
        "join raw.erp_stock_location l on l.id = s.warehouse "
        "where s.id in (select cast(split_part(shipment, ',', 2) as bigint) "
        "from raw.erp_stock_move where shipment like 'stock.shipment.out.return,%' "
        "and origin = ?)",
        [f"sale.line,{line['id']}"],
    )
    assert shipment[1] == "WH-E"


class _RecordsAdapter:
    """Stands in for an ERP that returns records the contract cannot hold (Tryton never does)."""

    def __init__(self, records):
        self.records = records

    def pull(self, model, since, fields, *, batch_size=500) -> Iterator[dict]:
        yield from self.records


def test_records_that_do_not_fit_go_to_dead_letters_and_the_batch_goes_on(con):
    when = datetime(2026, 1, 5, 10, 30)
    records = [
        {"id": 1, "sale": 7, "product": 1, "quantity": -1.0, "unit_price": Decimal("1.123456"),
         "description": "too many decimals", "write_date": when, "create_date": when},
        {"id": "x", "write_date": when},
        {"id": 2, "sale": 7, "product": 1, "quantity": -2.0, "unit_price": Decimal("5.5"),
         "description": "fine", "write_date": None, "create_date": when},
    ]  # fmt: skip
    summary = pull_erp(con, _RecordsAdapter(records), models=["sale.line"])
    assert (summary.pulled, summary.landed, summary.dead_letters) == (3, 1, 2)
    assert _rows(con, "select id, unit_price from raw.erp_sale_line") == [(2, Decimal("5.5000"))]
    errors = [e for (e,) in _rows(con, "select error from meta.dead_letters order by position")]
    assert any("more than 4 decimals" in e for e in errors)
    assert pull_erp(con, _RecordsAdapter(records), models=["sale.line"]).landed == 0
    assert _rows(con, "select count(*) from meta.dead_letters") == [(2,)]
