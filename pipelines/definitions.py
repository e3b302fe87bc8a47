"""The code location: the only place the Dagster `Definitions` are built.

Every module of the `assets` and `sensors` packages that defines a module-level `defs`
(`dg.Definitions` with assets, checks, jobs, sensors or schedules) is merged here; resources and
the executor are set once, here. The in-process executor suits DuckDB's single writer and avoids
re-parsing dbt in every step process (STACK_NOTES).
"""

from __future__ import annotations

import importlib
import pkgutil

import dagster as dg

import assets
import sensors
from pipelines.dbt import dbt_resource
from pipelines.resources import SettingsResource


def _module_defs(package) -> list[dg.Definitions]:
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if isinstance(getattr(module, "defs", None), dg.Definitions):
            found.append(module.defs)
    return found


defs = dg.Definitions.merge(
    *_module_defs(assets),
    *_module_defs(sensors),
    dg.Definitions(
        resources={"settings": SettingsResource(), "dbt": dbt_resource()},
        executor=dg.in_process_executor,
    ),
)
