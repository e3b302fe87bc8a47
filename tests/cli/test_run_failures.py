"""How `returnsync run` sums up a failed step (pipelines/runner.py): one line with the step and
the user's error (not Dagster's wrapper), and the exit code of a returnsync error raised inside a
step (a warehouse still locked mid-run is 3, not 1)."""

from __future__ import annotations

import dagster as dg
import pytest

from pipelines.errors import EXIT_FAILED, EXIT_LOCKED, WarehouseLocked
from pipelines.runner import describe_failure


def _failed(exc: Exception):
    @dg.asset(name="landing_step")
    def step():
        raise exc

    job = dg.Definitions(assets=[step]).resolve_implicit_global_asset_job_def()
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    return job.execute_in_process(
        run_config=quiet, raise_on_error=False, instance=dg.DagsterInstance.ephemeral()
    )


@pytest.mark.parametrize(
    ("exc", "line", "code"),
    [
        (
            WarehouseLocked("the warehouse w.duckdb is still locked by PID 7 (duckdb)"),
            "step landing_step failed: the warehouse w.duckdb is still locked by PID 7 (duckdb)",
            EXIT_LOCKED,
        ),
        (
            ValueError("Invalid isoformat string: 'x'\nsecond line"),
            "step landing_step failed: ValueError: Invalid isoformat string: 'x'",
            EXIT_FAILED,
        ),
        (
            dg.Failure(description="push stopped: ERP unreachable"),
            "step landing_step failed: Failure: push stopped: ERP unreachable",
            EXIT_FAILED,
        ),
    ],
)
def test_a_failed_step_is_one_line_with_the_users_error(exc, line, code):
    result = _failed(exc)
    assert not result.success
    assert describe_failure(result) == (line, code)
