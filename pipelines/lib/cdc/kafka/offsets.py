"""Where the DuckDB stream ledger stands against the topics: end offsets and lag.

The lag sensor and the asset metadata read these; none of them consumes a message. Lag is the end
offset minus the ledger's next offset (source `SOURCE`), never the consumer group's commits, which
only mirror the ledger for outside monitoring.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.lib.cdc.kafka.client import (
    TopicPartitionKey,
    bootstrap_servers,
    matching_partitions,
    new_consumer,
)
from pipelines.lib.cdc.land import resume_offsets
from pipelines.settings import Settings

SOURCE = "kafka"  # the stream ledger's source for Kafka positions


def partitions_for_topic(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of one topic ([] if it does not exist)."""
    consumer = new_consumer(bootstrap_servers(settings))
    try:
        consumer.topics()  # refreshes metadata
        return sorted(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def end_offsets(
    settings: Settings, topics: Iterable[str] | None = None
) -> dict[TopicPartitionKey, int]:
    """(topic, partition) -> end offset (the next offset to be written), for the topic pattern."""
    consumer = new_consumer(bootstrap_servers(settings))
    try:
        tps = matching_partitions(consumer, settings.kafka_topic_pattern, topics)
        if not tps:
            return {}
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def lag(settings: Settings, con) -> dict[TopicPartitionKey, int]:
    """(topic, partition) -> records not yet landed: end offset minus the DuckDB ledger.

    `con` may be read-only. A partition missing from the ledger counts from its first offset.
    """
    consumer = new_consumer(bootstrap_servers(settings))
    try:
        tps = matching_partitions(consumer, settings.kafka_topic_pattern)
        if not tps:
            return {}
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
    finally:
        consumer.close()
    ledger = ledger_offsets(con)
    out = {}
    for tp in tps:
        key = (tp.topic, tp.partition)
        position = max(ledger.get(key, 0), starts[tp])
        out[key] = max(0, ends[tp] - position)
    return out


def consumer_lag(settings: Settings) -> dict[TopicPartitionKey, int]:
    """`lag` with its own short read-only look at the warehouse (for asset metadata)."""
    from pipelines.lib import warehouse

    if not settings.db_path.exists():
        return lag(settings, None)
    with warehouse.connection(settings.db_path, read_only=True) as con:
        return lag(settings, con)


def ledger_offsets(con) -> dict[TopicPartitionKey, int]:
    """The Kafka ledger ({} without a connection or before the ledger table exists)."""
    if con is None:
        return {}
    from pipelines.lib.warehouse import table_exists

    if not table_exists(con, "meta", "stream_offsets"):
        return {}
    return resume_offsets(con, SOURCE)
