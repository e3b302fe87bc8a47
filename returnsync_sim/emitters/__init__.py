"""One emitter per source: each writes what its source would deliver for one planned return.

- CDC sources (Kafka topics, through `cdc.CdcWriter`): `erp` (Tryton tables) and `wms`
  (receipts, inspections); their changes go through `delivery` (reorder, duplicates, late
  events, corrupted copies).
- File sources (landing folders): `returns_saas`, `shopify`, `amazon`, `b2b`, each a module with
  `SOURCE` (its folder), `CHANNEL` (the channel whose returns it carries), `MALFORMED` (the
  corrupted copies it can carry) and `emit(sim, r, rng, bad)`; plus `crosswalks` (reference/).

`sim` is the orchestrator (generator.Simulator): ids, output files, counters, dead letters.
"""

from __future__ import annotations

from . import amazon, b2b, returns_saas, shopify

# file sources in the order they are written for a return (and their corrupted copies planned)
FILE_EMITTERS = (returns_saas, shopify, amazon, b2b)
