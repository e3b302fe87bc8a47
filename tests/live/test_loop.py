"""The closed ERP loop on the live stack (DESIGN §13, issue 22), with nothing simulated between
Tryton and returnsync: a 30-return landscape is written into Tryton over JSON-RPC, Debezium
(Kafka Connect) snapshots and streams Tryton's PostgreSQL tables into Kafka, `returnsync run`
reads them, `push` writes ERP-native fixes into Tryton, Debezium captures those, and the next run
resolves them.

While the landscape is being written, Kafka Connect is killed (SIGKILL) once Debezium's topics
hold some but not all of the changes, and restarted: Debezium resumes from its last committed
offset (at least once), and the run must still find exactly the answer key.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from tests.live.conftest import loop_module

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.erp]

RETURNS = 30
SEED = 22


class ConnectKiller(threading.Thread):
    """SIGKILLs Kafka Connect once Debezium's topics hold at least `after` records, while the
    landscape is still being written; then starts a new worker (same group, same REST port)."""

    def __init__(self, stack, loop_mod, after: int = 200) -> None:
        super().__init__(daemon=True, name="connect-killer")
        self.stack, self.loop_mod, self.after = stack, loop_mod, after
        self.stop_event = threading.Event()
        self.at_kill: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        bootstrap = self.stack.env()["RETURNSYNC_KAFKA_BOOTSTRAP"]
        try:
            while not self.stop_event.is_set():
                total = sum(self.loop_mod.end_offsets(bootstrap).values())
                if total >= self.after:
                    self.stack.connect.kill()
                    self.at_kill = total
                    time.sleep(2)
                    self.stack.restart_connect()
                    return
                time.sleep(0.5)
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.fixture(scope="module")
def loop(live_stack, tmp_path_factory):
    loop_mod = loop_module()
    as_of = datetime.now(UTC).replace(second=0, microsecond=0).isoformat()
    work = tmp_path_factory.mktemp("loop")
    lp = loop_mod.Loop(live_stack.env(), work, as_of, returns=RETURNS, seed=SEED)
    killer = ConnectKiller(live_stack, loop_mod)
    killer.start()
    try:
        lp.simulate()
    finally:
        killer.stop_event.set()
        killer.join(120)
    bootstrap = live_stack.env()["RETURNSYNC_KAFKA_BOOTSTRAP"]
    lp.captured_first = loop_mod.wait_captured(bootstrap)
    lp.killer = killer
    lp.run()
    lp.open_first = lp.open_mismatches()
    return lp


def test_connect_was_killed_mid_stream_and_resumed(loop):
    killer = loop.killer
    assert killer.error is None, killer.error
    final = sum(loop.captured_first.values())
    assert killer.at_kill is not None, "the landscape was written before Debezium sent 200 events"
    assert 0 < killer.at_kill < final


def test_run_finds_exactly_the_answer_key(loop):
    expected = loop.expected()
    assert len(expected) >= 20
    missing = expected - loop.open_first
    extra = loop.open_first - expected
    assert not missing and not extra, f"missing {sorted(missing)}; extra {sorted(extra)}"
