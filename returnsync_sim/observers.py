"""Answer-key extensions: observers that see every planned return and write a truth file.

The generator streams (it never holds the landscape in memory), so a truth that other tests need
(money at risk per case, stage latencies, ...) is computed as each return is planned, from the
plan itself (what was injected), never from the product's SQL.

An observer has two methods:
- `on_return(sim, r, scenario, expected)`: called once per return after all its records were
  written; `r` is the planned `generator.Return`, `scenario` the `Scenario` it carries (or None
  for a clean return), `expected` its rows of the answer key as `(rule, rma_number, sku)`.
- `finish(sim, out)`: called once at the end; writes its file(s) under `out` and returns a dict
  merged into `landscape.json` under the observer's `name` (or None).

To add one: a module of its own in this package with the class, and one line in `OBSERVERS`
below (its file name goes into `OUTPUT_FILES` so a new landscape removes the old one).
"""

from __future__ import annotations

import importlib
from typing import Protocol

# "module:Class" of every observer, in the order they run. Each module is imported lazily.
OBSERVERS: tuple[str, ...] = (
    "returnsync_sim.stages:StageLatencies",
    "returnsync_sim.money:MoneyAtRisk",
)


class Observer(Protocol):
    name: str
    files: tuple[str, ...]

    def on_return(self, sim, r, scenario, expected) -> None: ...

    def finish(self, sim, out) -> dict | None: ...


def load_observers() -> list[Observer]:
    found = []
    for spec in OBSERVERS:
        module, _, attr = spec.partition(":")
        found.append(getattr(importlib.import_module(module), attr)())
    return found
