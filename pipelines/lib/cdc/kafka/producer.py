"""A small producer: `publish` records to topics it creates if missing (tests, benchmarks).

Production never produces: Debezium does. This writes records the way Debezium's Kafka Connect
would (UTF-8 JSON keys and values, a tombstone as a None value), acknowledged by all replicas and
idempotent, so a test's topic holds exactly what it published, in order per partition.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.lib.cdc.kafka.client import BOOTSTRAP_TIMEOUT_MS, CLIENT_ID, unreachable


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 3) -> None:
    """Create the topics that do not exist yet (`partitions` each, replication factor 1)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=CLIENT_ID,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise unreachable(bootstrap, exc) from exc
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in sorted(set(topics)) if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


def publish(bootstrap: str, records: Iterable[Any], partitions: int = 3) -> int:
    """Produce records (KafkaRecord-like objects or dicts: topic, partition, key, value).

    Missing topics are created with `partitions` partitions first (records are buffered for that).
    A record's partition is used modulo the topic's partition count; its offset is ignored (Kafka
    assigns offsets). Str or JSON keys and values are encoded as UTF-8 JSON bytes; None stays a
    tombstone. Returns how many records were acknowledged.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    buffered = list(records)
    ensure_topics(bootstrap, {_field(r, "topic") for r in buffered}, partitions)
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=CLIENT_ID,
            acks="all",
            linger_ms=20,
            batch_size=512 * 1024,
            enable_idempotence=True,  # in order per partition, no duplicates on retry
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise unreachable(bootstrap, exc) from exc
    counts: dict[str, int] = {}
    try:
        for r in buffered:
            topic = _field(r, "topic")
            if topic not in counts:
                counts[topic] = len(producer.partitions_for(topic))
            part = _field(r, "partition")
            producer.send(
                topic,
                key=_as_bytes(_field(r, "key")),
                value=_as_bytes(_field(r, "value")),
                partition=None if part is None else int(part) % counts[topic],
            )
        producer.flush()
    finally:
        producer.close()
    return len(buffered)
