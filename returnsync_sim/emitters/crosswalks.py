"""Reference files: the channel-SKU and warehouse crosswalks the product reads (reference/)."""

from __future__ import annotations

from .. import reference as ref


def write(sim) -> None:
    """The SKU and warehouse crosswalks (reference/), one row per channel SKU / DC."""
    w = sim.file("reference/sku_crosswalk.csv", ["channel", "channel_sku", "erp_product_code"])
    for ch in ref.CHANNELS:
        for p in sim.products:
            w.write_row([ch, p.channel_sku(ch), p.code])
            sim.file_records["reference"] += 1
    w = sim.file("reference/warehouse_crosswalk.csv", ["dc_code", "erp_warehouse_code"])
    for dc, code, _, _ in ref.WAREHOUSES:
        w.write_row([dc, code])
        sim.file_records["reference"] += 1
