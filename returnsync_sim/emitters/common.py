"""What several channel emitters print alike: the order reference and the week a file covers."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..plan import Return


def order_ref(r: Return) -> str:
    return {
        "shopify": f"#{1001 + r.index}",
        "amazon": f"1{r.index % 9 + 11}-{r.index:07d}-{(r.index * 7919) % 10**7:07d}",
        "b2b": f"PO-{r.party:05d}-{r.index:07d}",
    }[r.channel]


def week(t: datetime) -> str:
    monday = t.date() - timedelta(days=t.weekday())
    return monday.isoformat()
