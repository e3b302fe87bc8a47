"""The Kafka package's layering, as its docstring states it: each module imports only the modules
listed above it (client, offsets, fetcher, prefetch, consumer, producer, __main__), so the
package reads top to bottom and no import runs back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pipelines.lib.cdc.kafka as package

ORDER = ["client", "offsets", "fetcher", "prefetch", "consumer", "producer", "__main__"]
PREFIX = "pipelines.lib.cdc.kafka."


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PREFIX):
            found.add(node.module.removeprefix(PREFIX))
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix(PREFIX) for a in node.names if a.name.startswith(PREFIX)
            )
    return found


def test_every_module_is_in_the_documented_order():
    folder = Path(package.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    assert modules == set(ORDER)
    for name in ORDER:
        assert f"`{name}`" in package.__doc__


def test_each_module_imports_only_modules_above_it():
    folder = Path(package.__file__).parent
    for i, name in enumerate(ORDER):
        assert _imports(folder / f"{name}.py") <= set(ORDER[:i]), name
