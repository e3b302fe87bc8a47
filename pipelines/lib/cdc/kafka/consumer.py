"""`consume`: one bounded run from Kafka into `raw`, summed over its micro-batches.

The run is planned here (`fetcher.Plan`: where each partition starts, when to stop) and read by a
`fetcher.Fetcher` in this process or by the `prefetch` children; each decoded batch is landed
with `land.land_decoded` in one DuckDB transaction with its ledger positions (source
`offsets.SOURCE`), and only then are its offsets committed to the consumer group.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping

from pipelines.lib.cdc.kafka.client import BOOTSTRAP_TIMEOUT_MS, bootstrap_servers
from pipelines.lib.cdc.kafka.fetcher import Fetcher, Plan
from pipelines.lib.cdc.kafka.offsets import SOURCE
from pipelines.lib.cdc.kafka.prefetch import FETCH_PROCESSES, ChildFetchers
from pipelines.lib.cdc.land import BatchResult, land_decoded, load_connectors, resume_offsets
from pipelines.settings import Settings

BATCH_SIZE = 20_000  # records per DuckDB transaction (at most)


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

    bootstrap = bootstrap_servers(settings)
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
        plan = Plan(
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
        fetcher = ChildFetchers(plan, FETCH_PROCESSES) if prefetch else Fetcher(plan)
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
