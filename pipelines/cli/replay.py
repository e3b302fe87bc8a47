"""`returnsync replay`: re-ingest a CDC topic from a position (DESIGN §3, §7).

Idempotent: only positions not landed yet land, so replaying from offset 0 changes nothing.
Former dead letters are decoded again by default (e.g. after a decoder fix): those that decode now
land and leave the dead-letter table, the others stay (`--keep-dead-letters` skips them instead).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from pipelines.settings import Settings


def _timestamp_ms(text: str) -> int:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-11-01T00:00:00Z)",
            param_hint="--from-timestamp",
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


@click.command("replay")
@click.option(
    "--topic",
    required=True,
    help="Topic to re-ingest, e.g. erp.public.sale_sale or wms.public.receipts.",
)
@click.option(
    "--partition",
    type=click.IntRange(min=0),
    default=None,
    help="Only this partition (default: every partition of the topic).",
)
@click.option(
    "--from-offset",
    type=click.IntRange(min=0),
    default=None,
    help="Re-ingest records at or after this offset (of each partition replayed).",
)
@click.option(
    "--from-timestamp",
    metavar="ISO-8601",
    default=None,
    help="Re-ingest from the first record at or after this time, per partition (Kafka's "
    "offsets for times; in file mode the change event's ts_ms).",
)
@click.option(
    "--landing",
    "landing_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Landing directory holding cdc/*.ndjson (default: RETURNSYNC_LANDING or data/landing).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB warehouse file (default: RETURNSYNC_DB or data/returnsync.duckdb).",
)
@click.option(
    "--retry-dead-letters/--keep-dead-letters",
    default=True,
    show_default=True,
    help="Decode dead-lettered positions again and land those that decode now "
    "(or skip them like landed ones).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def replay(
    topic: str,
    partition: int | None,
    from_offset: int | None,
    from_timestamp: str | None,
    landing_dir: Path | None,
    db_path: Path | None,
    retry_dead_letters: bool,
    quiet: bool,
) -> None:
    """Re-ingest a CDC topic from an offset or a time; lands only what is not landed yet.

    With RETURNSYNC_KAFKA_BOOTSTRAP set it reads the topic from Kafka; otherwise it re-reads the
    records of the topic in the landing directory's cdc/*.ndjson files, whether or not those
    files were landed before. Prints what landed.
    """
    if (from_offset is None) == (from_timestamp is None):
        raise click.UsageError("give exactly one of --from-offset and --from-timestamp")
    start_ms = None if from_timestamp is None else _timestamp_ms(from_timestamp)
    settings = Settings.from_env(landing_dir=landing_dir, db_path=db_path)

    if settings.uses_kafka:
        result = _replay_kafka(
            settings, topic, partition, from_offset, start_ms, retry_dead_letters, quiet
        )
    else:
        from pipelines.lib import warehouse
        from pipelines.lib.cdc.files import cdc_files, replay_cdc_files

        if not cdc_files(settings.landing_dir):
            raise click.ClickException(
                f"no CDC files in {settings.landing_dir / 'cdc'} (and no Kafka configured)"
            )
        with warehouse.connection(settings.db_path) as con:
            summary = replay_cdc_files(
                con,
                settings.landing_dir,
                topic=topic,
                partition=partition,
                from_offset=from_offset,
                from_timestamp_ms=start_ms,
                retry_dead_letters=retry_dead_letters,
                progress=not quiet,
            )
        result = summary.result

    click.echo(f"replay {topic}: {sum(result.landed.values())} rows landed")
    for table, n in sorted(result.landed.items()):
        click.echo(f"  raw.{table}: {n}")
    click.echo(f"  already landed (skipped): {result.skipped}")
    click.echo(f"  former dead letters landed: {result.recovered}")
    click.echo(f"  new dead letters: {result.dead_letters}")
    if result.max_changed_at is not None:
        click.echo(f"  last source change: {result.max_changed_at.isoformat()}")


def _replay_kafka(settings, topic, partition, from_offset, start_ms, retry_dead_letters, quiet):
    """Kafka mode: `pipelines.lib.cdc.kafka.consumer.consume` of this topic from the given position.

    Unbounded (max_records 0): a replay runs until it reaches the end offsets taken at its start.
    With --from-timestamp every partition of the topic starts at its offset for that time
    (--partition does not narrow a time-based replay in Kafka mode; it is idempotent anyway).
    """
    from pipelines.lib.cdc.kafka.consumer import consume
    from pipelines.lib.cdc.kafka.offsets import partitions_for_topic

    common = dict(
        topics=[topic],
        retry_dead_letters=retry_dead_letters,
        max_records=0,
        progress=not quiet,
    )
    if start_ms is not None:
        return consume(settings, start_timestamp_ms=start_ms, **common)
    partitions = [partition] if partition is not None else partitions_for_topic(settings, topic)
    if not partitions:
        raise click.ClickException(f"topic {topic} has no partitions (does it exist?)")
    start = {(topic, p): from_offset for p in partitions}
    return consume(settings, start=start, **common)
