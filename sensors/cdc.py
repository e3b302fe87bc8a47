"""When the ERP and WMS change streams are landed: the Kafka lag sensor and the file-mode schedule.

- `cdc_lag_sensor` (Kafka mode) only looks: the topics' end offsets from the broker and the DuckDB
  stream ledger (read-only, briefly). It never consumes a message. When records wait, it requests
  `cdc_ingest_job` with a `run_key` made of the end offsets, so one end state never launches two
  runs.
- `cdc_ingest_schedule` (file mode) lands `<landing>/cdc/*.ndjson` every 5 minutes; with Kafka
  configured it skips (the sensor drives ingestion then).
"""

import hashlib

import dagster as dg

from assets.cdc import CDC_ASSET_KEYS
from pipelines.resources import SettingsResource

cdc_ingest_job = dg.define_asset_job(
    "cdc_ingest_job",
    selection=dg.AssetSelection.assets(*CDC_ASSET_KEYS),
    description="Land the ERP and WMS Debezium change streams (Kafka or cdc/*.ndjson) into raw.",
)


def lag_run_key(ends: dict[tuple[str, int], int]) -> str:
    """The run key of an end state: a hash of every (topic, partition, end offset), sorted."""
    text = "\n".join(f"{t}:{p}:{o}" for (t, p), o in sorted(ends.items()))
    return "cdc-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dg.sensor(
    job=cdc_ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Kafka mode: requests cdc_ingest_job when the change topics hold records the "
    "DuckDB ledger has not landed (end offsets minus ledger); never consumes messages.",
)
def cdc_lag_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    import duckdb

    from pipelines.errors import WarehouseLocked
    from pipelines.lib import warehouse
    from pipelines.lib.cdc.kafka.client import KafkaUnavailableError
    from pipelines.lib.cdc.kafka.offsets import end_offsets, ledger_offsets

    resolved = settings.get()
    if not resolved.uses_kafka:
        return dg.SkipReason("Kafka is not configured (RETURNSYNC_KAFKA_BOOTSTRAP unset)")
    try:
        ends = end_offsets(resolved)
    except KafkaUnavailableError as exc:
        return dg.SkipReason(str(exc))
    if not ends:
        return dg.SkipReason(f"no topics match {resolved.kafka_topic_pattern!r}")
    ledger: dict[tuple[str, int], int] = {}
    if resolved.db_path.exists():
        try:
            with warehouse.connection(resolved.db_path, read_only=True, lock_wait_s=0) as con:
                ledger = ledger_offsets(con)
        except (WarehouseLocked, duckdb.IOException) as exc:  # a run holds it: next tick
            return dg.SkipReason(f"warehouse busy ({exc}); a run is landing")
    pending = {tp: end - ledger.get(tp, 0) for tp, end in ends.items()}
    pending = {tp: n for tp, n in pending.items() if n > 0}
    if not pending:
        return dg.SkipReason(f"caught up: {len(ends)} partitions, nothing pending")
    total = sum(pending.values())
    context.log.info(f"{total} records pending on {len(pending)} partitions")
    return dg.RunRequest(
        run_key=lag_run_key(ends),
        tags={"returnsync/cdc_pending": str(total)},
    )


@dg.schedule(
    cron_schedule="*/5 * * * *",
    job=cdc_ingest_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="File mode: land new cdc/*.ndjson every 5 minutes (skips when Kafka is "
    "configured; cdc_lag_sensor drives ingestion then).",
)
def cdc_ingest_schedule(context: dg.ScheduleEvaluationContext, settings: SettingsResource):
    if settings.get().uses_kafka:
        return dg.SkipReason("Kafka is configured: cdc_lag_sensor requests CDC runs")
    return dg.RunRequest()


defs = dg.Definitions(
    jobs=[cdc_ingest_job], sensors=[cdc_lag_sensor], schedules=[cdc_ingest_schedule]
)
