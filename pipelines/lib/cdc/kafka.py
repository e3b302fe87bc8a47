"""Debezium change streams from Apache Kafka into `raw` (DESIGN §2.1, §3), with kafka-python.

- `consume`: a bounded run. Partitions of the topics matching `settings.kafka_topic_pattern` are
  assigned by hand (no group rebalancing) and sought to the DuckDB stream ledger's positions
  (source `kafka`), never to Kafka's committed offsets. Micro-batches are decoded with
  `land.decode_batch` (in the prefetch children) and landed with `land.land_decoded`, each in one
  DuckDB transaction with its ledger positions; only after that
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
import dataclasses
import gc
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.lib.cdc.land import (
    BatchResult,
    DecodedBatch,
    decode_batch,
    land_decoded,
    load_connectors,
    resume_offsets,
)
from pipelines.settings import Settings

SOURCE = "kafka"  # the stream ledger's source for Kafka positions
CLIENT_ID = "returnsync"
BATCH_SIZE = 20_000  # records per DuckDB transaction (at most)
BOOTSTRAP_TIMEOUT_MS = 10_000  # kafka-python 3.0 waits 30 s by default for an unreachable broker
POLL_TIMEOUT_MS = 500
CHILD_SILENCE_S = 300.0  # a prefetch child is presumed stuck after this long without a word
FETCH_PROCESSES = 3  # prefetch children; each polls its share of the partitions
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


@dataclass(frozen=True)
class _Plan:
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


class _Fetcher:
    """The Kafka side of a run: assign, seek, poll and decode micro-batches, commit offsets for
    lag."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.consumer = _consumer(
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
        self.tps = _partitions(consumer, plan.pattern, plan.topics)[plan.shard :: plan.shards]
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
            batch = _poll_batch(consumer, want, plan.deadline)
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


def _poll_batch(consumer, want: int, deadline: float | None) -> list:
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


# -- the fetchers in child processes (prefetch) -------------------------------------------------
#
# kafka-python decodes record batches in Python, and so does the Debezium decoder: in one process
# they take turns. With `prefetch`, forked children poll Kafka and decode the Debezium envelopes
# while the parent writes DuckDB. There are FETCH_PROCESSES of them, each with every third
# partition. On 300,000 events in 3 partitions (bench/ingest.py), with children that only
# polled and a parent that decoded: one child landed at 0.57x the bare consume, two at 0.61x,
# three at 0.65-0.70x, with the parent busy 2.4 s of a 3.7 s run; with the children decoding
# too, 0.75-0.77x, the parent busy 0.7 s (0.87-0.95x with gc.freeze). A child never touches DuckDB;
# it hands the parent decoded batches (`land.DecodedBatch`: Arrow tables and dead letters)
# through a pipe (at most about one batch ahead: the pipe is the back-pressure), commits
# consumer-group offsets when the parent says a batch is in DuckDB, and stops early when told to
# (the run's max_records was reached by the children together). If the parent dies (SIGKILL),
# the children get SIGKILL too (PR_SET_PDEATHSIG) or a broken pipe.


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _fetch_child(conn, parent_end, plan: _Plan) -> None:
    parent_end.close()
    _die_with_parent()
    # The garbage collector's full collections would walk every object inherited from the
    # parent (and copy the pages it touches): 0.5 of 5.5 CPU-s of children on 300,000 events.
    gc.freeze()
    fetcher = None
    try:
        try:
            fetcher = _Fetcher(plan)
            todo = fetcher.open()
        except KafkaUnavailableError as exc:
            conn.send(("unavailable", str(exc)))
            return
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("open", todo))
        stopped = False
        for batch in fetcher.batches():
            while conn.poll() and not stopped:
                stopped = _child_command(conn.recv(), fetcher)
            if stopped:
                break
            conn.send(("batch", batch))
        conn.send(("end",))
        while True:  # final commits, until the parent closes
            message = conn.recv()
            if message[0] == "close":
                break
            _child_command(message, fetcher)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        if fetcher is not None:
            fetcher.close()
        conn.close()


def _child_command(message: tuple, fetcher: _Fetcher) -> bool:
    """Carry out a command from the parent; True if it says stop."""
    if message[0] == "commit":
        fetcher.commit(message[1])
    return message[0] == "stop"


class _Child:
    """One forked `_fetch_child` and the parent's end of its pipe."""

    def __init__(self, ctx, plan: _Plan) -> None:
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_fetch_child, args=(child_end, self.conn, plan), daemon=True)
        self.proc.start()
        child_end.close()

    def recv(self) -> tuple:
        try:
            message = self.conn.recv()
        except EOFError:
            raise RuntimeError("a Kafka fetch process ended unexpectedly") from None
        if message[0] == "unavailable":
            raise KafkaUnavailableError(message[1])
        if message[0] == "error":
            raise RuntimeError(f"Kafka fetch failed: {message[1]}")
        return message

    def send(self, *message: Any) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(message)


class _ChildFetchers:
    """The parent's side of the prefetch children: the same interface as `_Fetcher`.

    Batches are taken from whichever child has one ready. The children share the run's
    `max_records`: once their batches reach it, the batch that crosses it is cut and the children
    are told to stop (what they had already polled is read and dropped)."""

    def __init__(self, plan: _Plan, processes: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.max_records = plan.max_records or None  # 0: no limit
        self.children: list[_Child] = []
        for shard in range(processes):
            shard_plan = dataclasses.replace(plan, shard=shard, shards=processes)
            self.children.append(_Child(ctx, shard_plan))
        self.owner: dict[TopicPartitionKey, _Child] = {}  # who reads each partition

    def _ready(self, children: list[_Child]) -> list[_Child]:
        from multiprocessing.connection import wait

        by_conn = {child.conn: child for child in children}
        ready = wait(list(by_conn), timeout=CHILD_SILENCE_S)  # each reports every idle poll
        if not ready:
            for child in children:
                child.proc.kill()
            raise RuntimeError(
                f"a Kafka fetch process said nothing for {CHILD_SILENCE_S:.0f} s; stopped it"
            )
        return [by_conn[conn] for conn in ready]

    def open(self) -> int:
        todo = sum(child.recv()[1] for child in self.children)
        return min(todo, self.max_records) if self.max_records else todo

    def batches(self) -> Iterator[DecodedBatch]:
        live = list(self.children)
        left = self.max_records
        while live:
            for child in self._ready(live):
                message = child.recv()
                if message[0] == "end":
                    live.remove(child)
                    continue
                batch: DecodedBatch = message[1]
                if left is not None:
                    if left <= 0:
                        continue  # polled before the stop arrived: dropped, read next run
                    n = batch.count
                    if n >= left:
                        batch = batch.head(left)
                        for other in self.children:
                            other.send("stop")
                    left -= min(n, left)
                for topic, partition, _ in batch.chunks:
                    self.owner[(topic, partition)] = child
                yield batch

    def commit(self, offsets: Mapping[TopicPartitionKey, int]) -> None:
        by_child: dict[_Child, dict[TopicPartitionKey, int]] = {}
        for part, offset in offsets.items():
            if (child := self.owner.get(part)) is not None:
                by_child.setdefault(child, {})[part] = offset
        for child, parts in by_child.items():
            child.send("commit", parts)

    def close(self) -> None:
        # Closing our end after "close" also frees a child blocked sending a batch nobody will
        # read (the run failed): its send fails and it exits; a child in its final-commit loop
        # still reads the commits and the "close" already in the pipe.
        for child in self.children:
            child.send("close")
            child.conn.close()
        for child in self.children:
            child.proc.join(timeout=30)
            if child.proc.is_alive():
                child.proc.kill()
                child.proc.join()


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
    prefetch: bool = True,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> BatchResult:
    """Land the change streams from Kafka into `raw`: one bounded run, summed over its batches.

    Starts where the DuckDB ledger says (or, for a replay, at `start`: one offset for every
    partition, or a mapping of (topic, partition) or topic to offsets; or at the first offset at or
    after `start_timestamp_ms`). `topics` restricts the run to those topics (default: every topic
    matching `settings.kafka_topic_pattern`). Stops at `max_records` (default
    `settings.kafka_max_records`, 0 = no limit), after `max_seconds`, or once every partition has
    reached the end offset it had when the run started. Each micro-batch (at most `batch_size`
    records) is one DuckDB transaction; its offsets are committed to the consumer group after it.
    With `prefetch` (default) FETCH_PROCESSES forked child processes poll Kafka and decode while
    this one lands.
    """
    from pipelines.lib import warehouse

    bootstrap = _bootstrap(settings)
    if max_records is None:
        max_records = settings.kafka_max_records or None
    connectors = load_connectors(settings.landing_dir)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    if isinstance(start, Mapping):
        start = dict(start)
    total = BatchResult.empty()
    bar = None
    with (
        warehouse.connection(settings.db_path) as con,
        warehouse.memory_limit(con, warehouse.LANDING_MEMORY_LIMIT),
    ):
        plan = _Plan(
            bootstrap=bootstrap,
            group=settings.kafka_group,
            pattern=settings.kafka_topic_pattern,
            topics=None if topics is None else tuple(topics),
            ledger=resume_offsets(con, SOURCE),
            start=start,
            start_timestamp_ms=start_timestamp_ms,
            max_records=max_records,
            deadline=deadline,
            batch_size=batch_size,
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            connectors=connectors,
        )
        fetcher = _ChildFetchers(plan, FETCH_PROCESSES) if prefetch else _Fetcher(plan)
        try:
            todo = fetcher.open()
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=todo, desc="kafka -> raw", unit="rec", file=sys.stderr)
            for batch in fetcher.batches():
                result = land_decoded(
                    con, batch, source=SOURCE, retry_dead_letters=retry_dead_letters
                )
                # after the DuckDB commit: for lag monitoring only
                fetcher.commit(batch.next_offsets())
                total = total.merge(result)
                if bar is not None:
                    bar.update(batch.count)
                if on_batch is not None:
                    on_batch(result)
        finally:
            if bar is not None:
                bar.close()
            fetcher.close()
    return total


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
