"""Publish a landscape's CDC records to Kafka: same topics, partitions, keys and value bytes as
the NDJSON files (lines that are not JSON at all are file corruption and are not sent)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from tqdm import tqdm

VALUE_MARK = ',"value":'


def parse_line(line: str) -> tuple[str, int, bytes, bytes | None] | None:
    """(topic, partition, key bytes, value bytes or None) of one file line; None if not JSON."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    key = json.dumps(rec["key"], separators=(",", ":"), sort_keys=True).encode()
    value = rec["value"]
    if value is None:
        return rec["topic"], rec["partition"], key, None
    if isinstance(value, str):  # raw bytes that are not valid JSON
        return rec["topic"], rec["partition"], key, value.encode()
    raw = line[line.index(VALUE_MARK) + len(VALUE_MARK) : line.rstrip("\n").rindex("}")]
    return rec["topic"], rec["partition"], key, raw.encode()


def publish(
    out_dir: Path | str,
    bootstrap: str,
    partitions: int = 3,
    progress: bool = True,
    timeout_ms: int = 30_000,
    topic_prefix: str = "",
) -> dict[str, int]:
    """Create the topics (`partitions` each) and produce every record; returns counts per topic.

    Each record goes to the partition its line names, with the line's key and value bytes.
    `topic_prefix` (tests only) is prepended to every topic name.
    """
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    files = sorted((Path(out_dir) / "cdc").glob("*.ndjson"))
    topics = [topic_prefix + f.name[: -len(".ndjson")] for f in files]
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="returnsync-simulate",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently
                admin.create_topics(new, wait_for_metadata=True)
    finally:
        admin.close()
    # idempotent: a retried batch is never written twice, so offsets match the files exactly
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
        request_timeout_ms=timeout_ms,
        delivery_timeout_ms=max(120_000, 4 * timeout_ms),
        bootstrap_timeout_ms=timeout_ms,
    )
    counts: dict[str, int] = {}
    failures: list[BaseException] = []
    try:
        for path in files:
            with open(path, encoding="utf-8") as f:
                for line in tqdm(
                    f,
                    desc=f"kafka {path.stem}",
                    unit="rec",
                    file=sys.stderr,
                    disable=not progress,
                    mininterval=0.5,
                ):
                    parsed = parse_line(line)
                    if parsed is None:
                        continue
                    topic, part, key, value = parsed
                    topic = topic_prefix + topic
                    future = producer.send(topic, key=key, value=value, partition=part)
                    future.add_errback(failures.append)
                    counts[topic] = counts.get(topic, 0) + 1
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise RuntimeError(
            f"{len(failures)} record(s) not acknowledged by Kafka; first error: {failures[0]!r}"
        )
    return counts
