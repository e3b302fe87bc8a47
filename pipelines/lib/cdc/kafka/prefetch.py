"""The fetchers in forked child processes, so that Kafka and the decoder overlap DuckDB.

kafka-python parses record batches in Python and so does the Debezium decoder: in one process they
take turns with the DuckDB writes. With `prefetch` (the default of `consume`), FETCH_PROCESSES
forked children each run a `fetcher.Fetcher` on every FETCH_PROCESSES-th partition, polling and
decoding while the parent lands (bench/README.md, "Kafka ingest", has the measurements).

The protocol, over one pipe per child:

- child -> parent: `("open", todo)`, then `("batch", DecodedBatch)`..., then `("end",)`; or
  `("unavailable", message)` / `("error", message)`, which the parent raises;
- parent -> child: `("commit", offsets)` once a batch is in DuckDB, `("stop",)` when the
  children together reached the run's `max_records`, `("close",)` at the end.

A child never touches DuckDB. The pipe is the back-pressure (a child is at most about one batch
ahead). If the parent dies, its children get SIGKILL (PR_SET_PDEATHSIG) or a broken pipe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Iterator, Mapping
from typing import Any

from pipelines.lib.cdc.kafka.client import KafkaUnavailableError, TopicPartitionKey
from pipelines.lib.cdc.kafka.fetcher import Fetcher, Plan
from pipelines.lib.cdc.land import DecodedBatch

FETCH_PROCESSES = 3  # prefetch children; each polls its share of the partitions
CHILD_SILENCE_S = 300.0  # a prefetch child is presumed stuck after this long without a word


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _fetch_child(conn, parent_end, plan: Plan) -> None:
    parent_end.close()
    _die_with_parent()
    # Full collections would walk every object inherited from the parent (copying the pages
    # they touch): the child's own allocations are all the collector needs to see.
    gc.freeze()
    fetcher = None
    try:
        try:
            fetcher = Fetcher(plan)
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


def _child_command(message: tuple, fetcher: Fetcher) -> bool:
    """Carry out a command from the parent; True if it says stop."""
    if message[0] == "commit":
        fetcher.commit(message[1])
    return message[0] == "stop"


class _Child:
    """One forked `_fetch_child` and the parent's end of its pipe."""

    def __init__(self, ctx, plan: Plan) -> None:
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


class ChildFetchers:
    """The parent's side of the prefetch children: the same interface as `Fetcher`.

    Batches are taken from whichever child has one ready. The children share the run's
    `max_records`: once their batches reach it, the batch that crosses it is cut and the children
    are told to stop (what they had already polled is read and dropped)."""

    def __init__(self, plan: Plan, processes: int) -> None:
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
