"""CDC ingestion benchmark: Kafka -> raw landed events/s against kafka-python's bare consume rate.

DESIGN §10. In one run, on one topic (`erp.public.sale_line`, 3 partitions, N bare Debezium
envelopes with `precise` decimals):

1. reference: kafka-python's bare consume rate (assign, seek to the beginning, poll until every
   record was returned; no decoding, no writing), with `crc32c` installed;
2. returnsync: `pipelines.lib.cdc.kafka.consumer.consume` into a fresh DuckDB file (decode,
   dead-letter checks, raw rows and ledger in one transaction per micro-batch, group commits for
   lag).

Prints one JSON line {name, figures, reference, ratio, versions, date} and appends a row to
bench/RESULTS.md. Goal (issue 4): ratio >= 0.7 and >= 50,000 landed events/s on one core.

    .venv/bin/python bench/ingest.py                        # starts its own broker
    .venv/bin/python bench/ingest.py --bootstrap 127.0.0.1:9092 --events 500000
    # one core: a broker pinned elsewhere (taskset -c 1 make kafka-start), this on core 0
    taskset -c 0 .venv/bin/python bench/ingest.py --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from statistics import median

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench._common import fmt_spread, spread  # noqa: E402
from pipelines.lib.cdc.kafka.consumer import BATCH_SIZE, consume  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from tests.fixtures.kafka_broker import (  # noqa: E402
    load_broker_module,
    recreate_topics,
    sale_line_event,
)

TOPIC = "erp.public.sale_line"
RESULTS = PROJECT_ROOT / "bench" / "RESULTS.md"


def produce(bootstrap: str, n: int) -> float:
    """Produce n events (3 partitions, round robin); returns seconds taken."""
    from kafka import KafkaProducer
    from tqdm import tqdm

    recreate_topics(bootstrap, [TOPIC])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=50, batch_size=1024 * 1024
    )
    start = time.perf_counter()
    for i in tqdm(range(n), desc="produce", unit="ev", file=sys.stderr, mininterval=2):
        e = sale_line_event(i)
        producer.send(TOPIC, key=e["key"], value=e["value"], partition=e["partition"])
    producer.flush()
    producer.close()
    return time.perf_counter() - start


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the prefetch child)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bare_consume(bootstrap: str, n: int) -> tuple[float, float]:
    """kafka-python alone: poll every record once (no decode, no write); (wall s, CPU s)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_poll_records=BATCH_SIZE,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    tps = [TopicPartition(TOPIC, p) for p in range(3)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = 0
    start, cpu = time.perf_counter(), _cpu()
    while got < n:
        for messages in consumer.poll(timeout_ms=1000, max_records=BATCH_SIZE).values():
            got += len(messages)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    consumer.close()
    return seconds, cpu


def broker_cpu(pid: int | None) -> float | None:
    """CPU seconds the broker process has used so far (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def warm_up() -> None:
    """One-time work done on first use, kept out of both timed sections: pyarrow imports pandas
    the first time it converts a Python list (about 1 s here), as kafka-python's own imports
    are done before its bare consume is timed. A long-running consumer pays it once."""
    import pyarrow as pa

    pa.array(["warm up"])


def returnsync_consume(bootstrap: str, n: int, work: Path) -> tuple[float, float, int]:
    settings = Settings.from_env(
        env={},
        base_dir=work,
        kafka_bootstrap=bootstrap,
        kafka_group="returnsync-bench",
        kafka_topic_pattern=r"^erp\.public\.sale_line$",
        kafka_max_records=0,
    )
    start, cpu = time.perf_counter(), _cpu()
    result = consume(settings, progress=True)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    landed = sum(result.landed.values())
    if landed != n or result.dead_letters:
        raise SystemExit(f"landed {landed} of {n} events, {result.dead_letters} dead letters")
    return seconds, cpu, landed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000, help="events to produce")
    parser.add_argument("--bootstrap", help="use this broker (default: start one)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    parser.add_argument(
        "--no-append",
        "--no-record",
        dest="no_append",
        action="store_true",
        help="do not append a row to bench/RESULTS.md",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="returnsync-bench-") as tmp:
        work = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            mod = load_broker_module()
            broker = mod.Broker(work / "kafka", mod.free_port(), mod.free_port())
            bootstrap = broker.start()
        pid = broker.proc.pid if broker is not None and broker.proc is not None else None
        runs: dict[str, list[float]] = {k: [] for k in ("bare", "landed", "bare_cpu")}
        runs.update({"landed_cpu": [], "bare_broker_cpu": [], "landed_broker_cpu": []})
        try:
            produce_s = produce(bootstrap, args.events)
            warm_up()
            for r in range(args.repeats):  # alternated, so both sides see the same load
                b0 = broker_cpu(pid)
                bare_s, bare_cpu = bare_consume(bootstrap, args.events)
                b1 = broker_cpu(pid)
                landed_s, landed_cpu, landed = returnsync_consume(
                    bootstrap, args.events, work / f"run{r}"
                )
                b2 = broker_cpu(pid)
                runs["bare"].append(bare_s)
                runs["bare_cpu"].append(bare_cpu)
                runs["landed"].append(landed_s)
                runs["landed_cpu"].append(landed_cpu)
                if b0 is not None and b1 is not None and b2 is not None:
                    runs["bare_broker_cpu"].append(b1 - b0)
                    runs["landed_broker_cpu"].append(b2 - b1)
        finally:
            if broker is not None:
                broker.stop()

    bare_eps = args.events / median(runs["bare"])
    landed_eps = landed / median(runs["landed"])
    kafka_jar = next(
        iter(sorted((PROJECT_ROOT / ".cache/kafka/lib").glob("kafka_2.13-*.jar"))), None
    )
    line = {
        "name": "cdc_ingest_kafka",
        "figures": {
            "events": args.events,
            "landed_events_per_s": round(landed_eps),
            "landed_s": spread(runs["landed"]),
            "bare_consume_events_per_s": round(bare_eps),
            "bare_consume_s": spread(runs["bare"]),
            "produce_s": round(produce_s, 2),
            # CPU seconds (process + prefetch child): what the figures cost, whatever the load;
            # the broker shares the same 2 cores, so its CPU is part of the budget too
            "landed_cpu_s": spread(runs["landed_cpu"]),
            "bare_consume_cpu_s": spread(runs["bare_cpu"]),
            "broker_cpu_s_during_landed": spread(runs["landed_broker_cpu"] or [float("nan")]),
            "broker_cpu_s_during_bare": spread(runs["bare_broker_cpu"] or [float("nan")]),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
            # cores this process may run on (`taskset -c 0 ...` for the one-core figure)
            "cpus_usable": len(os.sched_getaffinity(0)),
            "external_broker": args.bootstrap is not None,
        },
        "reference": "kafka-python bare consume (poll only, crc32c), same topic, same run",
        "ratio": round(landed_eps / bare_eps, 3),
        "versions": {
            "python": platform.python_version(),
            "kafka-python": version("kafka-python"),
            "crc32c": version("crc32c"),
            "duckdb": version("duckdb"),
            "broker": kafka_jar.stem.removeprefix("kafka_2.13-") if kafka_jar else "external",
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(json.dumps(line))
    if not args.no_append:
        record(line)
    return 0


def record(line: dict) -> None:
    """Append one row to bench/RESULTS.md (created with its header if missing)."""
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\n"
            "| date | name | figures | reference | ratio | versions |\n"
            "|---|---|---|---|---|---|\n"
        )
    f = line["figures"]
    figures = (
        f"{f['events']:,} events: landed {f['landed_events_per_s']:,}/s "
        f"({fmt_spread(f['landed_s'])}); bare consume {f['bare_consume_events_per_s']:,}/s "
        f"({fmt_spread(f['bare_consume_s'])}); CPU s landed "
        f"{fmt_spread(f['landed_cpu_s'], '')} + broker "
        f"{fmt_spread(f['broker_cpu_s_during_landed'], '')}, bare "
        f"{fmt_spread(f['bare_consume_cpu_s'], '')} + broker "
        f"{fmt_spread(f['broker_cpu_s_during_bare'], '')}; "
        f"load {f['load_average_1m']} on {f['cpus']} cores"
    )
    if f["cpus_usable"] < f["cpus"]:
        figures += f", this process pinned to {f['cpus_usable']} of them"
        if f["external_broker"]:
            figures += " (the broker outside it)"
    versions = ", ".join(f"{k} {v}" for k, v in line["versions"].items())
    with RESULTS.open("a") as out:
        out.write(
            f"| {line['date']} | {line['name']} | {figures} | {line['reference']} | "
            f"{line['ratio']} | {versions} |\n"
        )


if __name__ == "__main__":
    sys.exit(main())
