"""A single-node Apache Kafka broker (KRaft, broker + controller) on 127.0.0.1, without the tarball.

The jars come from Maven Central through `scripts/kafka/pom.xml` (STACK_NOTES: Kafka's own scripts
are thin wrappers around `kafka.tools.StorageTool` and `kafka.Kafka`). Standard library only, so it
runs before (and without) the project's virtualenv.

    python scripts/kafka/broker.py fetch             # jars into .cache/kafka/lib (Maven)
    python scripts/kafka/broker.py run               # foreground on 127.0.0.1:9092, Ctrl-C stops it
    python scripts/kafka/broker.py start             # background; prints the bootstrap address
    python scripts/kafka/broker.py stop              # SIGTERM, then SIGKILL after a grace period
    python scripts/kafka/broker.py status

The log directory is formatted once (KRaft `StorageTool format`); later starts reuse it.
The process itself (background start, readiness, SIGTERM/SIGKILL) is scripts/server_process.py,
shared with the live stack (scripts/stack/stack.py). The test
fixture (`tests/fixtures/kafka_broker.py`) imports this file and uses `Broker` directly.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent


def load_server_process():
    """scripts/server_process.py, the background-process handling the live stack shares."""
    name = "returnsync_server_process"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "server_process.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclass looks its module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


_server_process = load_server_process()
free_port = _server_process.free_port
_port_open = _server_process.port_open
LIB_DIR = Path(os.environ.get("RETURNSYNC_KAFKA_LIB", PROJECT_ROOT / ".cache" / "kafka" / "lib"))
DEFAULT_DIR = PROJECT_ROOT / ".cache" / "kafka" / "dev"
HEAP = os.environ.get("RETURNSYNC_KAFKA_HEAP", "-Xms128m -Xmx512m")
READY_MARKER = "Kafka Server started"

LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = warn
logger.ready.name = kafka.server.KafkaRaftServer
logger.ready.level = info
"""


def fetch(quiet: bool = True) -> Path:
    """Resolve the broker's jars into LIB_DIR with Maven (a no-op once they are there)."""
    if any(LIB_DIR.glob("kafka_2.13-*.jar")):
        return LIB_DIR
    cmd = ["mvn", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies"]
    cmd += [f"-Dkafka.lib.dir={LIB_DIR}"] + (["-q"] if quiet else [])
    print(f"fetching Kafka jars from Maven Central into {LIB_DIR} ...", file=sys.stderr)
    subprocess.run(cmd, check=True)
    if not any(LIB_DIR.glob("kafka_2.13-*.jar")):
        raise RuntimeError(f"Maven ran but no kafka_2.13 jar is in {LIB_DIR}")
    return LIB_DIR


@dataclass
class Broker:
    """One broker process with its own log directory (`dir/`: config, data, pid, server.log)."""

    dir: Path = DEFAULT_DIR
    port: int = 9092
    controller_port: int = 9093
    log_level: str = "warn"
    _server: object = field(default=None, init=False, repr=False)

    @property
    def server(self):
        """The broker's process (scripts/server_process.py `ServerProcess`)."""
        if self._server is None:
            self._server = _server_process.ServerProcess(
                "the Kafka broker", self.log_file, self.pid_file, tail_lines=30
            )
        return self._server

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.server.proc

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    def _java(self, main: str, *args: str) -> list[str]:
        classpath = os.pathsep.join(str(p) for p in sorted(fetch().glob("*.jar")))
        return [
            "java",
            *HEAP.split(),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            classpath,
            main,
            *args,
        ]

    def write_config(self) -> Path:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.hours": "-1",
        }
        config = self.dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(LOG4J2.format(level=self.log_level))
        return config

    def format_once(self, config: Path) -> None:
        """KRaft needs its log directory formatted with a cluster id, once."""
        if (self.dir / "data" / "meta.properties").exists():
            return
        raw = uuid.uuid4().bytes
        cluster_id = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config))
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"formatting {self.dir / 'data'} failed:\n{done.stdout}{done.stderr}"
            )

    def command(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        self.format_once(config)
        return self._java("kafka.Kafka", str(config))

    def start(self, timeout: float = 90.0) -> str:
        """Start in the background and wait until the broker serves; returns the bootstrap."""
        if self.running_pid():
            raise RuntimeError(f"a broker already runs from {self.dir} (pid {self.running_pid()})")
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} on 127.0.0.1 is already in use")
        self.server.start(
            self.command(),
            ready=lambda log: READY_MARKER in log and _port_open(self.port),
            timeout=timeout,
            on_timeout=self.stop,
        )
        return self.bootstrap

    def running_pid(self) -> int | None:
        return self.server.running_pid()

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (Kafka's clean shutdown), SIGKILL if it has not ended after `grace` seconds."""
        self.server.stop(grace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "action", choices=["fetch", "run", "start", "stop", "status"], help="what to do"
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="broker directory")
    parser.add_argument("--port", type=int, default=9092, help="PLAINTEXT port on 127.0.0.1")
    parser.add_argument("--controller-port", type=int, default=9093, help="KRaft controller port")
    parser.add_argument("--log-level", default="warn", help="broker log level (default warn)")
    args = parser.parse_args(argv)
    broker = Broker(args.dir.resolve(), args.port, args.controller_port, args.log_level)
    if args.action == "fetch":
        print(fetch(quiet=False))
    elif args.action == "run":
        cmd = broker.command()
        print(f"Kafka on {broker.bootstrap} (Ctrl-C stops it), data in {broker.dir}", flush=True)
        os.execvp(cmd[0], cmd)
    elif args.action == "start":
        print(broker.start())
    elif args.action == "stop":
        broker.stop()
    else:
        pid = broker.running_pid()
        print(f"running, pid {pid}, {broker.bootstrap}" if pid else "stopped")
        return 0 if pid else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
