"""Debezium change streams from Apache Kafka into `raw` (DESIGN §2.1, §3), with kafka-python.

- `consume`: a bounded run. Partitions of the topics matching `settings.kafka_topic_pattern` are
  assigned by hand (no group rebalancing) and sought to the DuckDB stream ledger's positions
  (source `kafka`), never to Kafka's committed offsets. Micro-batches are landed with
  `land.land_batch`, each in one DuckDB transaction with its ledger positions; only after that
  commit are the offsets committed to the consumer group, for lag monitoring. A run stops at
  `max_records`, at `max_seconds`, or when it has caught up to the end offsets taken at its start.
- `end_offsets`, `lag`, `consumer_lag`: what the lag sensor and the asset metadata read. They never
  consume messages.
- `publish`: a small producer (tests, benchmarks, the simulator).

A process killed at any point loses nothing and duplicates nothing: the ledger moves with the rows,
and positions already landed are skipped on replay.

    python -m pipelines.lib.cdc.kafka --help     # the same run outside Dagster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pipelines.lib.cdc.land import (
    BatchResult,
    KafkaRecord,
    land_batch,
    load_connectors,
    resume_offsets,
)
from pipelines.settings import Settings

SOURCE = "kafka"  # the stream ledger's source for Kafka positions
CLIENT_ID = "returnsync"
BATCH_SIZE = 20_000  # records per DuckDB transaction (at most)
BOOTSTRAP_TIMEOUT_MS = 10_000  # kafka-python 3.0 waits 30 s by default for an unreachable broker
POLL_TIMEOUT_MS = 500
MAX_IDLE_POLLS = 60  # ~30 s without a record while short of the end offsets: give up the run

TopicPartitionKey = tuple[str, int]


class KafkaUnavailableError(RuntimeError):
    """The bootstrap servers could not be reached (or did not answer in time)."""


# -- clients -------------------------------------------------------------------------------------


def _unreachable(bootstrap: str, exc: BaseException) -> KafkaUnavailableError:
    return KafkaUnavailableError(
        f"cannot reach Kafka at {bootstrap} (RETURNSYNC_KAFKA_BOOTSTRAP): {exc}. "
        "Is the broker running? (`make kafka` starts one on 127.0.0.1:9092)"
    )


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ValueError("Kafka is not configured: set RETURNSYNC_KAFKA_BOOTSTRAP")
    return settings.kafka_bootstrap


def _consumer(
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
        raise _unreachable(bootstrap, exc) from exc


def _partitions(
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


def partitions_for_topic(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of one topic ([] if it does not exist)."""
    consumer = _consumer(_bootstrap(settings))
    try:
        consumer.topics()  # refreshes metadata
        return sorted(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def end_offsets(
    settings: Settings, topics: Iterable[str] | None = None
) -> dict[TopicPartitionKey, int]:
    """(topic, partition) -> end offset (the next offset to be written), for the topic pattern."""
    consumer = _consumer(_bootstrap(settings))
    try:
        tps = _partitions(consumer, settings.kafka_topic_pattern, topics)
        if not tps:
            return {}
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def lag(settings: Settings, con) -> dict[TopicPartitionKey, int]:
    """(topic, partition) -> records not yet landed: end offset minus the DuckDB ledger.

    `con` may be read-only. A partition missing from the ledger counts from its first offset.
    """
    consumer = _consumer(_bootstrap(settings))
    try:
        tps = _partitions(consumer, settings.kafka_topic_pattern)
        if not tps:
            return {}
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
    finally:
        consumer.close()
    ledger = _ledger(con)
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


def _ledger(con) -> dict[TopicPartitionKey, int]:
    if con is None:
        return {}
    from pipelines.lib.warehouse import table_exists

    if not table_exists(con, "meta", "stream_offsets"):
        return {}
    return resume_offsets(con, SOURCE)


# -- consuming -----------------------------------------------------------------------------------


def _start_positions(
    consumer,
    tps: list,
    ledger: Mapping[TopicPartitionKey, int],
    start: int | Mapping | None,
    start_timestamp_ms: int | None,
) -> dict:
    """Where each partition starts: the ledger, or a replay's offset or time."""
    begin = consumer.beginning_offsets(tps)
    ends = consumer.end_offsets(tps)
    positions = {}
    if start_timestamp_ms is not None:
        found = consumer.offsets_for_times({tp: start_timestamp_ms for tp in tps})
        for tp in tps:
            hit = found.get(tp)
            positions[tp] = hit.offset if hit is not None else ends[tp]
    else:
        for tp in tps:
            key = (tp.topic, tp.partition)
            if start is None:
                offset = ledger.get(key, begin[tp])
            elif isinstance(start, Mapping):
                offset = start.get(key, start.get(tp.topic, ledger.get(key, begin[tp])))
            else:
                offset = int(start)
            positions[tp] = offset
    # clamp into what the log holds (retention may have deleted the start)
    return {tp: min(max(o, begin[tp]), ends[tp]) for tp, o in positions.items()}


def _commit_for_lag(consumer, committed: Mapping) -> None:
    """Consumer-group commit after the DuckDB commit: lag monitoring only, failures tolerated."""
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    if not committed:
        return
    with contextlib.suppress(KafkaError):
        consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in committed.items()})


def consume(
    settings: Settings,
    *,
    start: int | Mapping | None = None,
    start_timestamp_ms: int | None = None,
    max_records: int | None = None,
    max_seconds: float | None = None,
    progress: bool = False,
    topics: Iterable[str] | None = None,
    retry_dead_letters: bool = False,
    batch_size: int = BATCH_SIZE,
    bootstrap_timeout_ms: int = BOOTSTRAP_TIMEOUT_MS,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> BatchResult:
    """Land the change streams from Kafka into `raw`: one bounded run, summed over its batches.

    Starts where the DuckDB ledger says (or, for a replay, at `start`: one offset for every
    partition, or a mapping of (topic, partition) or topic to offsets; or at the first offset at or
    after `start_timestamp_ms`). `topics` restricts the run to those topics (default: every topic
    matching `settings.kafka_topic_pattern`). Stops at `max_records` (default
    `settings.kafka_max_records`, 0 = no limit), after `max_seconds`, or once every partition has
    reached the end offset it had when the run started.
    """
    from pipelines.lib import warehouse

    bootstrap = _bootstrap(settings)
    if max_records is None:
        max_records = settings.kafka_max_records or None
    connectors = load_connectors(settings.landing_dir)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    total = BatchResult.empty()
    consumer = _consumer(
        bootstrap,
        group=settings.kafka_group,
        bootstrap_timeout_ms=bootstrap_timeout_ms,
        max_poll_records=batch_size,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    bar = None
    try:
        tps = _partitions(consumer, settings.kafka_topic_pattern, topics)
        if not tps:
            return total
        consumer.assign(tps)
        with warehouse.connection(settings.db_path) as con:
            ledger = resume_offsets(con, SOURCE)
            positions = _start_positions(consumer, tps, ledger, start, start_timestamp_ms)
            ends = consumer.end_offsets(tps)
            for tp, offset in positions.items():
                consumer.seek(tp, offset)
            pending = {tp for tp in tps if positions[tp] < ends[tp]}
            todo = sum(ends[tp] - positions[tp] for tp in tps)
            if max_records:
                todo = min(todo, max_records)
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=todo, desc="kafka -> raw", unit="rec", file=sys.stderr)
            done = 0
            idle = 0  # consecutive polls without records: a partition that cannot be read ends it
            while pending and idle < MAX_IDLE_POLLS:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                want = batch_size if not max_records else min(batch_size, max_records - done)
                if want <= 0:
                    break
                batch, last = _poll_batch(consumer, want, deadline)
                idle = 0 if batch else idle + 1
                if batch:
                    result = land_batch(
                        con,
                        batch,
                        source=SOURCE,
                        connectors=connectors,
                        retry_dead_letters=retry_dead_letters,
                    )
                    total = total.merge(result)
                    done += len(batch)
                    _commit_for_lag(consumer, last)
                    if bar is not None:
                        bar.update(len(batch))
                    if on_batch is not None:
                        on_batch(result)
                for tp in list(pending):
                    if consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        return total
    finally:
        if bar is not None:
            bar.close()
        consumer.close(autocommit=False)


def _poll_batch(consumer, want: int, deadline: float | None) -> tuple[list[KafkaRecord], dict]:
    """Up to `want` records from one or a few polls; also each partition's next offset."""
    batch: list[KafkaRecord] = []
    last: dict = {}
    empty_polls = 0
    while len(batch) < want and empty_polls < 1:
        if deadline is not None and time.monotonic() >= deadline:
            break
        polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=want - len(batch))
        if not polled:
            empty_polls += 1
            continue
        for tp, messages in polled.items():
            topic, partition = tp.topic, tp.partition
            batch.extend(KafkaRecord(topic, partition, m.offset, m.key, m.value) for m in messages)
            last[tp] = messages[-1].offset + 1
    return batch, last


# -- producing -----------------------------------------------------------------------------------


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
        raise _unreachable(bootstrap, exc) from exc
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
        raise _unreachable(bootstrap, exc) from exc
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


# -- command line (also the kill test's subprocess) ----------------------------------------------


def _print_batch(result: BatchResult) -> None:
    landed = sum(result.landed.values())
    print(json.dumps({"batch_landed": landed, "skipped": result.skipped}), flush=True)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.lib.cdc.kafka",
        description="Land Debezium change streams from Kafka into the DuckDB raw tables "
        "(one bounded run; resumes from the DuckDB ledger). Prints a JSON summary.",
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (RETURNSYNC_KAFKA_BOOTSTRAP)")
    parser.add_argument("--db", type=Path, help="DuckDB file (RETURNSYNC_DB)")
    parser.add_argument("--landing", type=Path, help="landing directory (RETURNSYNC_LANDING)")
    parser.add_argument("--topics", help="topic regex (RETURNSYNC_KAFKA_TOPICS)")
    parser.add_argument("--group", help="consumer group for lag (RETURNSYNC_KAFKA_GROUP)")
    parser.add_argument("--max-records", type=int, help="stop after this many (0 = no limit)")
    parser.add_argument("--max-seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="records per txn")
    parser.add_argument("--from-offset", type=int, help="replay every partition from this offset")
    parser.add_argument("--progress", action="store_true", help="progress bar on stderr")
    parser.add_argument(
        "--bootstrap-timeout-ms",
        type=int,
        default=BOOTSTRAP_TIMEOUT_MS,
        help="give up on an unreachable bootstrap after this long",
    )
    parser.add_argument(
        "--print-batches", action="store_true", help="one JSON line per landed batch on stdout"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env(
        db_path=args.db,
        landing_dir=args.landing,
        kafka_bootstrap=args.bootstrap,
        kafka_topic_pattern=args.topics,
        kafka_group=args.group,
        kafka_max_records=args.max_records,
    )
    try:
        result = consume(
            settings,
            start=args.from_offset,
            max_seconds=args.max_seconds,
            batch_size=args.batch_size,
            progress=args.progress,
            on_batch=_print_batch if args.print_batches else None,
            bootstrap_timeout_ms=args.bootstrap_timeout_ms,
        )
    except (KafkaUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "landed": result.landed,
                "dead_letters": result.dead_letters,
                "skipped": result.skipped,
                "max_changed_at": None
                if result.max_changed_at is None
                else result.max_changed_at.isoformat(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main())
