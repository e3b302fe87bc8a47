"""The returns landscape simulator (DESIGN §9, docs/simulator.md).

A package of its own beside the product, installed by the same `pyproject.toml`: it writes what
the sources would deliver, so the product never imports it. Only the `returnsync simulate`
command does, lazily (`make lint` checks the imports against the contracts in `pyproject.toml`;
tests/test_architecture.py that the one allowed import is lazy). It may read the product's source
contracts (`pipelines.lib.contracts`), the formats it must write.

`simulate(n_returns, seed, out, as_of, options)` writes the landing layout of DESIGN §2.9 plus the
answer key (`expected_mismatches.csv`, `expected_dead_letters.csv`, `scenarios.csv`,
`landscape.json`); `publish(out, bootstrap)` sends the CDC records to Kafka;
`load_landscape(out, client)` moves the ERP side into a Tryton server (`--erp tryton`, §13).
"""

from .generator import SimOptions, simulate
from .kafka import publish
from .scenarios import RULES, SCENARIOS, SKU_RULES, Scenario
from .tryton import load_landscape

__all__ = [
    "RULES",
    "SCENARIOS",
    "SKU_RULES",
    "Scenario",
    "SimOptions",
    "load_landscape",
    "publish",
    "simulate",
]
