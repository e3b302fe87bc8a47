"""The connection to Kafka shared by the consumer, the offsets look-ups and the producer.

Every client gets the same `CLIENT_ID` and a short bootstrap timeout, and an unreachable broker
becomes one `KafkaUnavailableError` that says which variable to check. Partitions are chosen by
the topic regex (or an exact topic list) and sorted, so that every process of a run sees the same
list and the prefetch children can split it by index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipelines.settings import Settings

CLIENT_ID = "returnsync"
BOOTSTRAP_TIMEOUT_MS = 10_000  # kafka-python 3.0 waits 30 s by default for an unreachable broker

TopicPartitionKey = tuple[str, int]


class KafkaUnavailableError(RuntimeError):
    """The bootstrap servers could not be reached (or did not answer in time)."""


def unreachable(bootstrap: str, exc: BaseException) -> KafkaUnavailableError:
    return KafkaUnavailableError(
        f"cannot reach Kafka at {bootstrap} (RETURNSYNC_KAFKA_BOOTSTRAP): {exc}. "
        "Is the broker running? (`make kafka` starts one on 127.0.0.1:9092)"
    )


def bootstrap_servers(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ValueError("Kafka is not configured: set RETURNSYNC_KAFKA_BOOTSTRAP")
    return settings.kafka_bootstrap


def new_consumer(
    bootstrap: str,
    group: str | None = None,
    bootstrap_timeout_ms: int = BOOTSTRAP_TIMEOUT_MS,
    **config: Any,
):
    """A KafkaConsumer without auto-commit; an unreachable bootstrap raises a clear error."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=CLIENT_ID,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            request_timeout_ms=max(bootstrap_timeout_ms, 30_000),
            **config,
        )
    except KafkaError as exc:  # KafkaTimeoutError in 3.0 (NoBrokersAvailable before)
        raise unreachable(bootstrap, exc) from exc


def matching_partitions(
    consumer, pattern: str, topics: Iterable[str] | None = None
) -> list[Any]:  # list[TopicPartition]
    """TopicPartitions of the topics matching `pattern` (or exactly `topics`), sorted."""
    from kafka import TopicPartition

    wanted = set(topics) if topics is not None else None
    regex = re.compile(pattern) if pattern else None
    found = []
    for topic in sorted(consumer.topics()):
        if wanted is not None:
            if topic not in wanted:
                continue
        elif regex is not None and not regex.search(topic):
            continue
        for p in sorted(consumer.partitions_for_topic(topic) or ()):
            found.append(TopicPartition(topic, p))
    return found
