"""When the whole pipeline runs: `main_job` (every asset) and its nightly schedule.

`main_job` lands every source, builds the dbt models (rules included) and reconciles; the
nightly schedule runs it at 02:00 UTC for the full reconciliation (DESIGN §7). `returnsync run`
executes the same job.
"""

import dagster as dg

main_job = dg.define_asset_job(
    "main_job",
    selection=dg.AssetSelection.all(),
    description="Ingest every source, build staging/intermediate/marts/recon, reconcile, report.",
)

nightly_reconciliation_schedule = dg.ScheduleDefinition(
    name="nightly_reconciliation_schedule",
    job=main_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The full reconciliation every night at 02:00 UTC (as_of = the run's start).",
)

defs = dg.Definitions(jobs=[main_job], schedules=[nightly_reconciliation_schedule])
