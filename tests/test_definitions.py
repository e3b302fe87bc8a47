"""The code location loads, and its shape is snapshotted so a renamed key shows up in review.

After an intended change, refresh the snapshot with:
    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_definitions.py
"""

import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"
# DuckDB schemas of the warehouse, plus `analyst` (the published read-only copy) and
# `operations` (stage-latency KPIs computed from the marts, assets/operations.py)
LAYERS = {
    "raw",
    "staging",
    "intermediate",
    "marts",
    "recon",
    "seeds",
    "writeback",
    "analyst",
    "operations",
}


def describe(defs: dg.Definitions) -> str:
    graph = defs.resolve_asset_graph()
    lines = [f"asset {k.to_user_string()}" for k in sorted(defs.resolve_all_asset_keys())]
    lines += [
        f"check {c.asset_key.to_user_string()}:{c.name}" for c in sorted(graph.asset_check_keys)
    ]
    repo = defs.get_repository_def()
    lines += [
        f"job {j.name}"
        for j in sorted(repo.get_all_jobs(), key=lambda j: j.name)
        if not j.name.startswith("__")
    ]
    lines += [f"sensor {s.name}" for s in sorted(repo.sensor_defs, key=lambda s: s.name)]
    lines += [f"schedule {s.name}" for s in sorted(repo.schedule_defs, key=lambda s: s.name)]
    return "\n".join(lines) + "\n"


def test_definitions_match_snapshot(definitions):
    current = describe(definitions)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(current)
    assert current == SNAPSHOT.read_text(), (
        "the code location changed shape; if intended, refresh with "
        "UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_definitions.py"
    )


def test_every_asset_key_is_schema_and_table(definitions):
    keys = definitions.resolve_all_asset_keys()
    assert keys
    for key in keys:
        assert len(key.path) == 2, key
        assert key.path[0] in LAYERS, key


def test_in_process_executor(definitions):
    assert definitions.executor is dg.in_process_executor
