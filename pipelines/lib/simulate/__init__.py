"""The returns landscape simulator (DESIGN §9, docs/simulator.md).

`simulate(n_returns, seed, out, as_of, options)` writes the landing layout of DESIGN §2.9 plus the
answer key (`expected_mismatches.csv`, `expected_dead_letters.csv`, `scenarios.csv`,
`landscape.json`); `publish(out, bootstrap)` sends the CDC records to Kafka.
"""

from .generator import SimOptions, simulate
from .kafka import publish
from .scenarios import RULES, SCENARIOS, SKU_RULES, Scenario

__all__ = ["RULES", "SCENARIOS", "SKU_RULES", "Scenario", "SimOptions", "publish", "simulate"]
