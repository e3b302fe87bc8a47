"""ERP (Tryton tables, CDC): the original sale, the return sale and its lines, the return
shipment, its stock moves and the credit notes of one return; and the reference tables."""

from __future__ import annotations

import random

from .. import reference as ref
from ..cdc import Change
from ..plan import CENT, CreditNote, Return, hours
from .common import order_ref


def write_snapshot(sim) -> None:
    """The ERP's reference tables (currencies, locations, products, parties) as snapshot `r`
    events (or `c` events without a snapshot)."""
    at = sim.snapshot_at
    op = "r" if sim.opt.snapshot else "c"
    snap = "true" if sim.opt.snapshot else "false"
    changes = []
    for code, cid in ref.CURRENCIES.items():
        changes.append(
            sim.cdc.change(
                "erp",
                "currency_currency",
                op,
                {"id": cid, "code": code, "name": code},
                at,
                snapshot=snap,
            )
        )
    locs = [
        {
            "id": ref.CUSTOMER_LOCATION_ID,
            "code": "CUS",
            "name": "Customer",
            "type": "customer",
            "parent": None,
        }
    ]
    for _, code, lid, name in ref.WAREHOUSES:
        locs.append({"id": lid, "code": code, "name": name, "type": "warehouse", "parent": None})
        for suffix, off in ref.DISPOSITIONS.values():
            locs.append(
                {
                    "id": lid + off,
                    "code": f"{code}-{suffix}",
                    "name": f"{name} {ref.DISPOSITION_NAMES[suffix]}",
                    "type": "storage",
                    "parent": lid,
                }
            )
    for loc in locs:
        changes.append(sim.cdc.change("erp", "stock_location", op, loc, at, snapshot=snap))
    for p in sim.products:
        changes.append(
            sim.cdc.change(
                "erp",
                "product_product",
                op,
                {"id": p.id, "code": p.code, "template": p.id},
                at,
                snapshot=snap,
            )
        )
    for pid in range(1, sim.n_parties + 1):
        first, last = ref.party_name(pid)
        changes.append(
            sim.cdc.change(
                "erp",
                "party_party",
                op,
                {"id": pid, "code": f"C{pid:07d}", "name": f"{first} {last}"},
                at,
                snapshot=snap,
            )
        )
    if changes and sim.opt.snapshot:
        changes[-1].snapshot = "last"
    for ch in changes:
        sim.cdc.write(ch)


def emit(sim, r: Return, rng: random.Random, out: list[Change]) -> None:
    cdc, as_of = sim.cdc, sim.as_of
    wh_id = ref.WAREHOUSES[r.warehouse][2]
    cur = ref.CURRENCIES[r.currency]
    order_reference = order_ref(r)
    sale_id = sim.next_id("sale_sale")
    r._sale_number = f"SO{sale_id:07d}"  # type: ignore[attr-defined]
    sale = {
        "id": sale_id,
        "number": r._sale_number,
        "reference": order_reference,  # type: ignore
        "party": r.party,
        "currency": cur,
        "warehouse": wh_id,
        "sale_date": r.order_at.date(),
        "state": "processing",
        "origin": None,
        "create_date": r.order_at,
        "write_date": r.order_at,
        "company": 1,
    }
    snap = sim.opt.snapshot and r.order_at < sim.snapshot_at
    if snap:
        sale = {**sale, "state": "done"}
        out.append(cdc.change("erp", "sale_sale", "r", sale, sim.snapshot_at, snapshot="true"))
    else:
        out.append(cdc.change("erp", "sale_sale", "c", sale, r.order_at))
        done_at = r.order_at + hours(rng.uniform(24, 72))
        if done_at <= as_of:
            out.append(
                cdc.change(
                    "erp",
                    "sale_sale",
                    "u",
                    {**sale, "state": "done", "write_date": done_at},
                    done_at,
                    before=sale,
                )
            )
    for ln in r.lines:
        row = {
            "id": ln.sale_line_id,
            "sale": sale_id,
            "product": ln.product.id,
            "quantity": float(ln.ordered),
            "unit_price": ln.product.price,
            "description": ln.product.name,
        }
        out.append(
            cdc.change(
                "erp",
                "sale_line",
                "r" if snap else "c",
                row,
                sim.snapshot_at if snap else r.order_at,
                snapshot="true" if snap else "false",
            )
        )
    if not r.erp_return:
        return
    ret_id = sim.next_id("sale_sale")
    at = r.erp_at
    ret = {
        "id": ret_id,
        "number": f"SO{ret_id:07d}",
        "reference": r.rma,
        "party": r.party,
        "currency": cur,
        "warehouse": wh_id,
        "sale_date": at.date(),
        "state": "draft",
        "origin": f"sale.sale,{sale_id}",
        "create_date": at,
        "write_date": at,
        "company": 1,
    }
    out.append(cdc.change("erp", "sale_sale", "c", ret, at))
    conf_at = at + hours(rng.uniform(0.01, 0.2))
    final = "cancelled" if r.state == "cancelled" else "processing"
    if conf_at <= as_of:
        out.append(
            cdc.change(
                "erp",
                "sale_sale",
                "u",
                {**ret, "state": final, "write_date": conf_at},
                conf_at,
                before=ret,
            )
        )
    for ln in r.lines:
        out.append(
            cdc.change(
                "erp",
                "sale_line",
                "c",
                {
                    "id": ln.ret_line_id,
                    "sale": ret_id,
                    "product": ln.product.id,
                    "quantity": float(-ln.qty),
                    "unit_price": ln.product.price,
                    "description": f"Return: {ln.product.name}",
                },
                at,
            )
        )
    if r.state == "cancelled":
        return
    ship_id = sim.next_id("shipment")
    ship_at = at + hours(0.25)
    ship = {
        "id": ship_id,
        "number": f"RS{ship_id:07d}",
        "reference": r.rma,
        "warehouse": wh_id,
        "state": "draft",
        "effective_date": None,
    }
    out.append(cdc.change("erp", "stock_shipment_out_return", "c", ship, ship_at))
    receipts = [rc.at for ln in r.lines for rc in ln.receipts]
    if receipts:
        t = min(receipts) + hours(rng.uniform(0.1, 0.9))
        if t <= as_of:
            out.append(
                cdc.change(
                    "erp",
                    "stock_shipment_out_return",
                    "u",
                    {**ship, "state": "received", "effective_date": t.date()},
                    t,
                    before=ship,
                )
            )
    for m in r.moves:
        loc = ref.location_id(m.warehouse, m.disposition)
        move = {
            "id": sim.next_id("stock_move"),
            "product": m.line.product.id,
            "quantity": float(m.qty),
            "from_location": ref.CUSTOMER_LOCATION_ID,
            "to_location": loc,
            "shipment": f"stock.shipment.out.return,{ship_id}",
            "origin": f"sale.line,{m.line.ret_line_id}",
            "state": "done",
            "effective_date": m.at.date(),
            "create_date": m.at,
            "write_date": m.at,
        }
        if rng.random() < 0.3:
            t0 = m.at - hours(rng.uniform(0.05, 0.5))
            draft = {
                **move,
                "state": "assigned",
                "effective_date": None,
                "create_date": t0,
                "write_date": t0,
            }
            out.append(cdc.change("erp", "stock_move", "c", draft, t0))
            out.append(
                cdc.change(
                    "erp", "stock_move", "u", {**move, "create_date": t0}, m.at, before=draft
                )
            )
        else:
            out.append(cdc.change("erp", "stock_move", "c", move, m.at))
    if r.moves and rng.random() < sim.opt.rate("delete_rate"):
        sim.noise_counts["cdc_deleted_drafts"] += 1
        m = r.moves[0]
        t0 = m.at - hours(2)
        draft = {
            "id": sim.next_id("stock_move"),
            "product": m.line.product.id,
            "quantity": float(m.qty),
            "from_location": ref.CUSTOMER_LOCATION_ID,
            "to_location": ref.location_id(m.warehouse, "RESTOCK"),
            "shipment": f"stock.shipment.out.return,{ship_id}",
            "origin": f"sale.line,{m.line.ret_line_id}",
            "state": "draft",
            "effective_date": None,
            "create_date": t0,
            "write_date": t0,
        }
        out.append(cdc.change("erp", "stock_move", "c", draft, t0))
        dele = cdc.change("erp", "stock_move", "d", None, t0 + hours(0.5), before=draft)
        dele.tombstone = True  # type: ignore[attr-defined]
        out.append(dele)
    for c in r.credits:
        _credit_note(sim, r, rng, c, out)


def _credit_note(sim, r: Return, rng: random.Random, c: CreditNote, out: list[Change]) -> None:
    cdc = sim.cdc
    inv_id = sim.next_id("account_invoice")
    total = -c.total.quantize(CENT)
    inv = {
        "id": inv_id,
        "number": None,
        "type": "out",
        "party": r.party,
        "currency": ref.CURRENCIES[c.currency or r.currency],
        "invoice_date": c.at.date(),
        "state": "draft",
        "reference": r.rma,
        "description": f"Credit note for return {r.rma}",
        "total_amount_cache": total,
        "create_date": c.at - hours(0.2),
        "write_date": c.at - hours(0.2),
        "company": 1,
    }
    out.append(cdc.change("erp", "account_invoice", "c", inv, c.at - hours(0.2)))
    for ln, q in c.items:
        out.append(
            cdc.change(
                "erp",
                "account_invoice_line",
                "c",
                {
                    "id": sim.next_id("account_invoice_line"),
                    "invoice": inv_id,
                    "product": ln.product.id,
                    "quantity": float(-q),
                    "unit_price": ln.product.price,
                    "origin": f"sale.line,{ln.ret_line_id}",
                },
                c.at - hours(0.2),
            )
        )
    if c.state == "draft":
        return
    if c.state == "cancelled":
        out.append(
            cdc.change(
                "erp",
                "account_invoice",
                "u",
                {**inv, "state": "cancelled", "write_date": c.at},
                c.at,
                before=inv,
            )
        )
        return
    posted = {**inv, "state": "posted", "number": f"CN{inv_id:07d}", "write_date": c.at}
    out.append(cdc.change("erp", "account_invoice", "u", posted, c.at, before=inv))
    if c.paid_at is not None and c.paid_at <= sim.as_of:
        out.append(
            cdc.change(
                "erp",
                "account_invoice",
                "u",
                {**posted, "state": "paid", "write_date": c.paid_at},
                c.paid_at,
                before=posted,
            )
        )
