"""The `parallel` CDC file decoder (the reference code on chunks, in worker processes) against the
reference, differentially (issue 23): identical raw tables, ledgers and dead letters, with the
worker processes really started (`PARALLEL_MIN_BYTES` lowered) and chunks small enough that every
file spans several, so that chunks decoded out of order still land in order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pipelines.lib.cdc import files as cdc_files
from tests.cdc.test_columnar_diff import land_both, write_landing
from tests.hostile.test_ndjson_cdc import CDC_CASES


@pytest.fixture
def pool_always(monkeypatch):
    monkeypatch.setattr(cdc_files, "PARALLEL_MIN_BYTES", 0)


def test_hostile_cdc_corpus_lands_alike_in_worker_processes(tmp_path, pool_always):
    lines = [line for line, _ in CDC_CASES]
    ref, _, _ = land_both(
        tmp_path, write_landing(tmp_path / "landing", lines), 2048, other="parallel"
    )
    assert len(ref["dead_letters"]) > 20


def test_simulated_landscape_lands_alike_in_worker_processes(tmp_path, pool_always):
    from returnsync_sim import SimOptions
    from returnsync_sim import simulate as run_simulation

    landing = tmp_path / "landing"
    options = replace(SimOptions(), fault_rate=0.3, noise=True)
    run_simulation(60, 5, landing, datetime(2026, 12, 1, tzinfo=UTC), options, progress=False)
    ref, _, summary = land_both(tmp_path, landing, 64 << 10, other="parallel")
    assert sum(len(ref[k]) for k in ref if k.startswith(("erp_", "wms_"))) > 1000
    assert summary.unaccounted == 0
