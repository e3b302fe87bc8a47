"""ERP and WMS change streams landed into `raw.erp_*` / `raw.wms_*` (DESIGN §2.1-2.3, §3).

One landing step for both source systems: in file mode the CDC files are ledgered whole (one
sha256 per file, and a file may hold records of any topic), and in Kafka mode one consumer group
reads every topic of the pattern; so a single multi-asset keeps each file, and each record, read
once. It materializes every `["raw", "erp_*"]` and `["raw", "wms_*"]` key, each with its own
metadata: rows landed in this run, new dead letters, last source change time and, in Kafka mode,
the consumer lag of its topic's partitions.

A degraded source does not fail the run (DESIGN §12): if landing the change streams raises, or the
ERP pull cannot reach or log in to the ERP, that source (`cdc`, `erp_pull`) is marked stale in
`meta.source_status` with the error, and the step still materializes (`stale` in its metadata), so
dbt reconciles what there is; the planner then plans nothing and `returnsync run` exits 1.
Only a warehouse that stays locked (`WarehouseLocked`) still fails the step.
"""

from datetime import datetime

import dagster as dg

from pipelines.errors import WarehouseLocked
from pipelines.lib import source_status
from pipelines.lib.contracts import CDC_PREFIXES, CDC_TABLES, CdcTable
from pipelines.lib.stages import mark
from pipelines.resources import SettingsResource

GROUP = "landing"


def cdc_asset_key(table: CdcTable) -> dg.AssetKey:
    return dg.AssetKey(["raw", table.raw_table])


CDC_ASSET_KEYS: list[dg.AssetKey] = [cdc_asset_key(t) for t in CDC_TABLES]
CDC_ASSET_KEYS_BY_PREFIX: dict[str, list[dg.AssetKey]] = {
    p: [cdc_asset_key(t) for t in CDC_TABLES if t.prefix == p] for p in CDC_PREFIXES
}


def _spec(table: CdcTable) -> dg.AssetSpec:
    return dg.AssetSpec(
        cdc_asset_key(table),
        group_name=GROUP,
        description=f"Debezium change log of {table.prefix} `{table.table}` (topic "
        f"`{table.topic}`): one row per change, with its Kafka position, operation, source "
        "change time and the decoded record; deletes and tombstones are rows too.",
        kinds={"duckdb", "kafka"},
        tags={"source_system": table.prefix},
    )


def _last_changes(db_path) -> dict[str, datetime | None]:
    from pipelines.lib.warehouse import connection

    with connection(db_path) as con:
        return {
            t.raw_table: con.execute(f"select max(_changed_at) from raw.{t.raw_table}").fetchone()[
                0
            ]
            for t in CDC_TABLES
        }


def _lag_by_table(lags: dict[tuple[str, int], int]) -> dict[str, dict[str, int]]:
    """Consumer lag per raw table and partition (from `kafka.offsets.consumer_lag`)."""
    by_topic: dict[str, dict[str, int]] = {}
    for (topic, partition), lag in lags.items():
        by_topic.setdefault(topic, {})[str(partition)] = int(lag)
    return {t.raw_table: by_topic.get(t.topic, {}) for t in CDC_TABLES}


ERP_CHECK_ATTEMPTS = 3  # logins tried (with backoff) before the ERP pull is marked stale


def _pull_erp(context: dg.AssetExecutionContext, settings) -> dict[str, int]:
    """Batch pull from the ERP over JSON-RPC into the same raw tables (RETURNSYNC_ERP_PULL)."""
    from pipelines.lib.erp import adapter_from_settings, pull_erp, with_retries
    from pipelines.lib.warehouse import connection

    adapter = adapter_from_settings(settings)
    # reach the ERP and log in before the warehouse is opened: an outage holds no lock
    with_retries(adapter.check, attempts=ERP_CHECK_ATTEMPTS, base_delay=1.0)
    with connection(settings.db_path) as con:
        summary = pull_erp(con, adapter)
    context.log.info(
        f"ERP pull: {summary.pulled} records read, {summary.landed} new versions landed, "
        f"{summary.dead_letters} dead letters"
    )
    return {m.raw_table: m.landed for m in summary.models}


@dg.multi_asset(
    name="cdc_landing",
    specs=[_spec(t) for t in CDC_TABLES],
    can_subset=False,
    description="Land the ERP and WMS Debezium change streams: Kafka when "
    "RETURNSYNC_KAFKA_BOOTSTRAP is set, otherwise <landing>/cdc/*.ndjson; with "
    "RETURNSYNC_ERP_PULL=true, also the ERP's records pulled over JSON-RPC.",
)
def cdc_landing(context: dg.AssetExecutionContext, settings: SettingsResource):
    from pipelines.lib.cdc.files import land_cdc_files
    from pipelines.lib.cdc.land import BatchResult
    from pipelines.lib.warehouse import connection

    mark("landing")
    resolved = settings.get()
    lag: dict[str, dict[str, int]] = {}
    mode_metadata: dict = {}
    stale: dict[str, str] = {}  # source -> why it is stale in this run
    try:
        if resolved.uses_kafka:
            from pipelines.lib.cdc.kafka.consumer import consume
            from pipelines.lib.cdc.kafka.offsets import consumer_lag

            result = consume(resolved)
            lag = _lag_by_table(consumer_lag(resolved))
            mode_metadata["mode"] = "kafka"
        else:
            with connection(resolved.db_path) as con:
                summary = land_cdc_files(con, resolved.landing_dir, progress=False)
            result = summary.result
            mode_metadata = {
                "mode": "files",
                "files_landed": dg.MetadataValue.int(len(summary.files_landed)),
                "files_skipped": dg.MetadataValue.int(len(summary.files_skipped)),
                "unreadable_lines": dg.MetadataValue.int(summary.bad_lines),
                "lines_read": dg.MetadataValue.int(summary.lines_read),  # = blank+landed+dead+dup
                # not read: directories, FIFOs, symbolic links, unreadable files (DESIGN §12)
                "files_ignored": dg.MetadataValue.json(
                    [{"path": f.path, "reason": f.reason} for f in summary.files_ignored]
                ),
            }
            for ignored in summary.files_ignored:
                context.log.warning(f"{ignored.path}: {ignored.reason}")
    except WarehouseLocked:
        raise
    except Exception as exc:  # a degraded source: the others go on (DESIGN §12)
        stale[source_status.CDC] = source_status.one_line(exc)
        result = BatchResult(landed={}, dead_letters=0, skipped=0, max_changed_at=None)
        mode_metadata["mode"] = "kafka" if resolved.uses_kafka else "files"
    context.log.info(
        f"CDC landed {sum(result.landed.values())} rows, {result.dead_letters} new dead letters, "
        f"{result.skipped} records already landed"
    )
    pulled: dict[str, int] = {}
    if resolved.erp_pull:
        try:
            pulled = _pull_erp(context, resolved)
        except WarehouseLocked:
            raise
        except Exception as exc:  # the ERP is down or refuses us: CDC and files still count
            stale[source_status.ERP_PULL] = source_status.one_line(exc)
    _record_status(resolved, stale)
    for source, error in stale.items():
        context.log.warning(f"source {source} is stale: {error}")
        mode_metadata[f"stale_{source}"] = error
    last = _last_changes(resolved.db_path)
    for table in CDC_TABLES:
        name = table.raw_table
        metadata: dict = {
            "rows_landed": dg.MetadataValue.int(result.landed.get(name, 0)),
            "dead_letters": dg.MetadataValue.int(result.dead_letters_by_table.get(name, 0)),
            "dead_letters_all_topics": dg.MetadataValue.int(result.dead_letters),
            **mode_metadata,
        }
        if last.get(name) is not None:
            metadata["last_source_change_at"] = dg.MetadataValue.timestamp(last[name])
        if name in pulled:
            metadata["rows_pulled_from_erp"] = dg.MetadataValue.int(pulled[name])
        if name in lag:
            metadata["consumer_lag"] = dg.MetadataValue.json(lag[name])
            metadata["consumer_lag_total"] = dg.MetadataValue.int(sum(lag[name].values()))
        yield dg.MaterializeResult(asset_key=cdc_asset_key(table), metadata=metadata)


def _record_status(resolved, stale: dict[str, str]) -> None:
    """`meta.source_status` for this landing: `cdc` and (when pulling) `erp_pull`."""
    from pipelines.lib.warehouse import connection

    with connection(resolved.db_path) as con:
        for source in (source_status.CDC, source_status.ERP_PULL):
            if source in stale:
                source_status.mark_stale(con, source, stale[source])
            elif source == source_status.ERP_PULL and not resolved.erp_pull:
                source_status.forget(con, source)
            else:
                source_status.mark_ok(con, source)


defs = dg.Definitions(assets=[cdc_landing])
