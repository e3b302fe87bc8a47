"""The simulator's layout holds: each scenario owns its plan (faults.py), each source has its
emitter (emitters/), and the plan types stay importable from `returnsync_sim.generator` (the
observers' contract, observers.py)."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from fnmatch import fnmatch

from pipelines.lib.contracts import FILE_SOURCES
from returnsync_sim import faults
from returnsync_sim.emitters import FILE_EMITTERS
from returnsync_sim.generator import OUTPUT_DIRS, SimOptions, Simulator
from returnsync_sim.scenarios import COMBOS, SCENARIOS


def test_every_scenario_has_its_own_plan():
    for s in SCENARIOS:
        spec = faults.PLANS.get(s.name)
        assert spec is not None, f"{s.name}: no plan in returnsync_sim/faults.py"
        if s.extra_receipt:
            assert spec.receipt_age is not None and spec.plan is None, s.name
        else:
            assert spec.plan is not None and spec.receipt_age is None, s.name
    assert set(faults.PLANS) == {s.name for s in SCENARIOS}, "a plan without its scenario"


def test_every_combo_overlay_has_its_behaviour():
    for c in COMBOS:
        for name, _ in c.overlays:
            spec = faults.PLANS[name]
            assert spec.overlay is not None or spec.on_complete is not None, (c.name, name)
        if c.base != "complete":
            assert faults.PLANS[c.base].plan is not None, c.name


def test_each_file_source_has_one_emitter_writing_its_own_folder(tmp_path):
    sources = [e.SOURCE for e in FILE_EMITTERS]
    assert len(sources) == len(set(sources))
    assert set(sources) < set(OUTPUT_DIRS)
    sim = Simulator(40, 3, tmp_path, datetime(2024, 6, 30, tzinfo=UTC), SimOptions(), False)
    sim.run()
    for e in FILE_EMITTERS:
        written = {p.parent.name for p in (tmp_path / e.SOURCE).rglob("*") if p.is_file()}
        assert written == {e.SOURCE}, e.SOURCE


def test_the_plan_types_stay_importable_from_the_generator():
    gen = importlib.import_module("returnsync_sim.generator")
    for name in ("Return", "Line", "Receipt", "Inspection", "Move", "Refund", "CreditNote"):
        assert getattr(gen, name).__module__ == "returnsync_sim.plan", name
    assert gen.SimOptions.__module__ == "returnsync_sim.options"
    assert callable(gen.simulate)


def test_the_emitters_write_what_the_registry_declares(tmp_path):
    """Each file emitter is tied to its registry entry (pipelines/lib/contracts.py) and every file
    the simulator writes under a file source's folder matches that source's pattern."""
    sim = Simulator(60, 4, tmp_path, datetime(2024, 6, 30, tzinfo=UTC), SimOptions(), False)
    sim.run()
    for e in FILE_EMITTERS:
        assert e.CONTRACT in FILE_SOURCES and e.CONTRACT.source == e.SOURCE
    folders = {fs.folder for fs in FILE_SOURCES}
    assert set(OUTPUT_DIRS) == {"cdc", *folders}
    for path in tmp_path.rglob("*"):
        rel = path.relative_to(tmp_path).as_posix()
        if path.is_file() and rel.split("/")[0] in folders:
            assert any(fnmatch(rel, fs.pattern) for fs in FILE_SOURCES), rel


def test_the_scenarios_raise_only_catalogued_rules():
    from pipelines.lib.recon.catalog import CATALOG

    catalogued = {r.rule for r in CATALOG}
    for s in (*SCENARIOS, *COMBOS):
        assert set(s.rules) <= catalogued, (s.name, set(s.rules) - catalogued)
        assert {rule for rule, _ in s.keys} <= catalogued, s.name
