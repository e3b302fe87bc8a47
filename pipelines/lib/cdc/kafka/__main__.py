"""`python -m pipelines.lib.cdc.kafka`: one bounded Kafka run outside Dagster (`consumer.consume`).

Prints a JSON summary on stdout (with `--print-batches`, also one line per landed batch: the kill
test's subprocess reads them); a broker that cannot be reached, or Kafka not configured, is one
`error: ...` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.lib.cdc.kafka.client import BOOTSTRAP_TIMEOUT_MS, KafkaUnavailableError
from pipelines.lib.cdc.kafka.consumer import BATCH_SIZE, consume
from pipelines.lib.cdc.land import BatchResult
from pipelines.settings import Settings


def _print_batch(result: BatchResult) -> None:
    landed = sum(result.landed.values())
    print(json.dumps({"batch_landed": landed, "skipped": result.skipped}), flush=True)


def main(argv: list[str] | None = None) -> int:
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
    sys.exit(main())
