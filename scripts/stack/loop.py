"""The closed ERP loop on the live stack (DESIGN §13), shared by `make demo` and tests/live/.

Runs with the project's `.venv` (kafka-python, duckdb, the returnsync CLI). Each step is the real
command a user would type, run as a subprocess with the stack's environment:

    simulate --erp tryton --kafka   -> the ERP side into Tryton (Debezium captures it), WMS to Kafka
    wait_captured                   -> Debezium's topics stop growing (snapshot and stream done)
    run                             -> Kafka ingestion, dbt, reconciliation, planning
    approve                         -> a person approves what waits (over the auto-approve limits)
    push                            -> ERP-native fixes written into Tryton
    wait_captured + run             -> the fixes come back through Debezium; mismatches resolve
    push                            -> nothing left to send
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent
RETURNSYNC = PROJECT_ROOT / ".venv" / "bin" / "returnsync"


@dataclass
class Loop:
    """One landscape on one stack: its data directory, landing and environment."""

    stack_env: Mapping[str, str]
    work: Path
    as_of: str
    returns: int = 30
    seed: int = 22
    # a credit note off by an amount is made short by a credited unit (a credit fix completes
    # it): the landscape then has every rule with an ERP-native fix in a fixable form
    unit_short_credits: bool = True
    log: list[str] = field(default_factory=list)

    @property
    def landing(self) -> Path:
        return self.work / "landing"

    @property
    def data(self) -> Path:
        return self.work / "data"

    @property
    def db(self) -> Path:
        return self.data / "returnsync.duckdb"

    def env(self) -> dict[str, str]:
        # no RETURNSYNC_* setting of the caller's (an exported RETURNSYNC_DB would point the loop
        # at another warehouse; an in-process run in the same process sets it too): the stack's
        # and this landscape's only
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RETURNSYNC_")}
        return {
            **inherited,
            **self.stack_env,
            "RETURNSYNC_DATA_DIR": str(self.data),
            "RETURNSYNC_LANDING": str(self.landing),
            "RETURNSYNC_KAFKA_GROUP": f"returnsync-{self.work.name}",
        }

    def cli(self, *args: str, check: bool = True, timeout: float = 900) -> str:
        started = time.monotonic()
        done = subprocess.run(
            [str(RETURNSYNC), *args], env=self.env(), cwd=self.work,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        self.log.append(f"$ returnsync {' '.join(args)}  ({time.monotonic() - started:.0f} s)")
        if check and done.returncode != 0:
            raise RuntimeError(
                f"returnsync {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def simulate(self) -> str:
        self.work.mkdir(parents=True, exist_ok=True)
        return self.cli(
            "simulate", "--returns", str(self.returns), "--seed", str(self.seed),
            "--out", str(self.landing), "--as-of", self.as_of, "--no-noise", "--erp", "tryton",
            "--kafka", self.stack_env["RETURNSYNC_KAFKA_BOOTSTRAP"], "--quiet",
            *(("--erp-unit-short-credits",) if self.unit_short_credits else ()),
        )  # fmt: skip

    def run(self) -> str:
        return self.cli("run", "--as-of", self.as_of, "--quiet")

    def push(self) -> str:
        return self.cli("push")

    def approve_waiting(self, by: str = "loop") -> list[str]:
        """A person approves every adjustment waiting over the auto-approve limits (what
        `returnsync push --dry-run` lists as waiting); returns their ids."""
        ids = [
            r[0]
            for r in self.query(
                "select adjustment_id from writeback.adjustments where status = 'planned' "
                "order by adjustment_id"
            )
        ]
        if ids:
            self.cli("approve", *ids, "--by", by)
        return ids

    # -- what the warehouse says ----------------------------------------------------------------

    def expected(self) -> set[tuple[str, str, str]]:
        with open(self.landing / "expected_mismatches.csv", newline="") as f:
            return {(r["rule"], r["rma_number"], r["sku"]) for r in csv.DictReader(f)}

    def query(self, sql: str) -> list[tuple]:
        import duckdb

        con = duckdb.connect(str(self.db), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def open_mismatches(self) -> set[tuple[str, str, str]]:
        rows = self.query(
            "select rule, coalesce(rma_number, ''), coalesce(sku, '') from recon.mismatches "
            "where status = 'open'"
        )
        return set(rows)

    def adjustments(self) -> list[tuple]:
        return self.query(
            "select adjustment_id, rule, rma_number, coalesce(sku, ''), action, status, "
            "erp_document, idempotency_key from writeback.adjustments order by adjustment_id"
        )


def end_offsets(bootstrap: str, prefix: str = "erp.") -> dict[str, int]:
    """Sum of end offsets per topic whose name starts with `prefix`."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    try:
        topics = [t for t in consumer.topics() if t.startswith(prefix)]
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        totals: dict[str, int] = {}
        for tp, end in consumer.end_offsets(parts).items():
            totals[tp.topic] = totals.get(tp.topic, 0) + end
        return totals
    finally:
        consumer.close()


def wait_captured(
    bootstrap: str, quiet_s: float = 6.0, timeout: float = 300.0, at_least: int = 1
) -> dict[str, int]:
    """Wait until Debezium's topics hold at least `at_least` records and have not grown for
    `quiet_s` seconds (the connector has streamed what the ERP committed)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = end_offsets(bootstrap)
        total = sum(now.values())
        if now != last:
            last, since = now, time.monotonic()
        elif total >= at_least and time.monotonic() - since >= quiet_s:
            return now
        time.sleep(1.0)
    raise TimeoutError(f"Debezium's topics still growing (or empty) after {timeout:.0f} s: {last}")


def print_table(title: str, rows, out=sys.stdout) -> None:
    print(f"\n{title}", file=out)
    for row in sorted(rows):
        print("   " + "  ".join(str(x) for x in row), file=out)
    if not rows:
        print("   (none)", file=out)
