"""When write-back pushes: `adjustment_push_sensor` launches `push_adjustments_job` (DESIGN §6).

Each tick reads the approved, unsent adjustments (read-only) and, when there are some, requests
one run for that batch with a `run_key` derived from it (the sorted adjustment ids and their
idempotency keys, hashed), so the same batch is never launched twice; the run pushes exactly
those ids. No business logic here: the batch query and the key are in pipelines/lib/writeback.

It starts stopped (DESIGN §6): with the ERP variables exported, `make dev` must not push
auto-approved adjustments with nobody involved. A deployment turns it on once, in the UI
(Automation) or with `dagster sensor start adjustment_push_sensor -w workspace.yaml`; the
instance remembers that across restarts.
"""

import dagster as dg

from assets.writeback import push_adjustments_job
from pipelines.resources import SettingsResource


@dg.sensor(
    job=push_adjustments_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,  # a deployment turns it on (README)
    description="Launches push_adjustments_job for each new batch of approved, unsent adjustments.",
)
def adjustment_push_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    import duckdb

    from pipelines.errors import WarehouseLocked
    from pipelines.lib.warehouse import connection
    from pipelines.lib.writeback import batch_run_key, pending_adjustments

    resolved = settings.get()
    if not resolved.erp_url:
        return dg.SkipReason("no ERP configured (RETURNSYNC_ERP_URL): nothing is pushed")
    if not resolved.db_path.exists():
        return dg.SkipReason(f"no warehouse at {resolved.db_path} yet")
    try:
        with connection(resolved.db_path, read_only=True, lock_wait_s=0) as con:
            pending = pending_adjustments(con)
    except (WarehouseLocked, duckdb.Error) as exc:  # e.g. a run holds it: try on the next tick
        return dg.SkipReason(f"warehouse busy: {type(exc).__name__}")
    if not pending:
        return dg.SkipReason("no approved, unsent adjustments")
    ids = sorted(p.adjustment_id for p in pending)
    return dg.RunRequest(
        run_key=batch_run_key(pending),
        run_config={"ops": {"push_adjustments_op": {"config": {"adjustment_ids": ids}}}},
        tags={"returnsync/adjustments": str(len(ids))},
    )


defs = dg.Definitions(sensors=[adjustment_push_sensor])
