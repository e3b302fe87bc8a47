"""One consumer's side of a run: assign, seek, poll and decode micro-batches, commit offsets.

`Plan` is what a run reads, built by `consumer.consume`; a `Fetcher` carries it out, in the
landing process or in a prefetch child (`prefetch`), which reads only its shard of the sorted
partitions. Batches come out decoded (`land.decode_batch`: Arrow tables and dead letters), so
the lander only writes DuckDB. Consumer-group commits mirror the ledger for lag monitoring and
are made only after DuckDB committed the batch; a failed one is ignored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pipelines.lib.cdc.kafka.client import TopicPartitionKey, matching_partitions, new_consumer
from pipelines.lib.cdc.land import DecodedBatch, decode_batch

POLL_TIMEOUT_MS = 500
MAX_IDLE_POLLS = 60  # ~30 s without a record while short of the end offsets: give up the run


@dataclass(frozen=True)
class Plan:
    """What one run reads; built by the lander, executed by the fetcher (maybe in a child)."""

    bootstrap: str
    group: str
    pattern: str
    topics: tuple[str, ...] | None
    ledger: dict[TopicPartitionKey, int]
    start: int | dict | None
    start_timestamp_ms: int | None
    max_records: int | None
    deadline: float | None  # time.monotonic() value (system-wide on Linux, so fork-safe)
    batch_size: int
    bootstrap_timeout_ms: int
    connectors: Mapping[str, dict]  # decimal modes per topic prefix, for the decoder
    shard: int = 0  # this fetcher reads partitions shard, shard + shards, ... of the sorted list
    shards: int = 1


class Fetcher:
    """The Kafka side of a run: assign, seek, poll and decode micro-batches, commit offsets for
    lag."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.consumer = new_consumer(
            plan.bootstrap,
            group=plan.group,
            bootstrap_timeout_ms=plan.bootstrap_timeout_ms,
            max_poll_records=plan.batch_size,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        self.tps: list = []
        self.ends: dict = {}
        self.pending: set = set()

    def open(self) -> int:
        """Assign and seek; returns how many records the run expects to read."""
        plan, consumer = self.plan, self.consumer
        self.tps = matching_partitions(consumer, plan.pattern, plan.topics)[
            plan.shard :: plan.shards
        ]
        if not self.tps:
            return 0
        consumer.assign(self.tps)
        positions = self._start_positions()
        self.ends = consumer.end_offsets(self.tps)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        self.pending = {tp for tp in self.tps if positions[tp] < self.ends[tp]}
        todo = sum(max(0, self.ends[tp] - positions[tp]) for tp in self.tps)
        return min(todo, plan.max_records) if plan.max_records else todo

    def _start_positions(self) -> dict:
        """Where each partition starts: the ledger, or a replay's offset or time."""
        plan, consumer, tps = self.plan, self.consumer, self.tps
        begin = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        positions = {}
        if plan.start_timestamp_ms is not None:
            found = consumer.offsets_for_times({tp: plan.start_timestamp_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                positions[tp] = hit.offset if hit is not None else ends[tp]
        else:
            for tp in tps:
                key = (tp.topic, tp.partition)
                default = plan.ledger.get(key, begin[tp])
                if plan.start is None:
                    offset = default
                elif isinstance(plan.start, Mapping):
                    offset = plan.start.get(key, plan.start.get(tp.topic, default))
                else:
                    offset = int(plan.start)
                positions[tp] = offset
        # clamp into what the log holds (retention may have deleted the start)
        return {tp: min(max(o, begin[tp]), ends[tp]) for tp, o in positions.items()}

    def batches(self) -> Iterator[DecodedBatch]:
        """Decoded micro-batches until caught up to the end offsets, max_records or the
        deadline."""
        plan, consumer = self.plan, self.consumer
        done = 0
        idle = 0  # consecutive polls without records: a partition that cannot be read ends it
        while self.pending and idle < MAX_IDLE_POLLS:
            if plan.deadline is not None and time.monotonic() >= plan.deadline:
                return
            want = plan.batch_size
            if plan.max_records:
                want = min(want, plan.max_records - done)
            if want <= 0:
                return
            batch = poll_batch(consumer, want, plan.deadline)
            idle = 0 if batch else idle + 1
            for tp in list(self.pending):
                if consumer.position(tp) >= self.ends[tp]:
                    self.pending.discard(tp)
            if batch:
                done += len(batch)
                yield decode_batch(batch, plan.connectors)

    def commit(self, offsets: Mapping[TopicPartitionKey, int]) -> None:
        """Consumer-group commit after the DuckDB commit: lag monitoring only, failures ok."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        if not offsets:
            return
        with contextlib.suppress(KafkaError):
            self.consumer.commit(
                {
                    TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                    for (t, p), o in offsets.items()
                }
            )

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def poll_batch(consumer, want: int, deadline: float | None) -> list:
    """Up to `want` records from one or a few polls: kafka-python's `ConsumerRecord`s, which
    `decode_batch` reads as they are (topic, partition, offset, key, value)."""
    batch: list = []
    while len(batch) < want:
        if deadline is not None and time.monotonic() >= deadline:
            break
        polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=want - len(batch))
        if not polled:
            break
        for messages in polled.values():
            batch.extend(messages)
    return batch
