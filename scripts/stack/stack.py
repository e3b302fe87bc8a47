"""The live stack of DESIGN §13 on 127.0.0.1: PostgreSQL, Tryton, Kafka, Kafka Connect + Debezium.

    python scripts/stack/stack.py fetch     # Connect jars + Debezium plugin into .cache/ (Maven)
    python scripts/stack/stack.py up        # start everything in the background, print the env
    python scripts/stack/stack.py down      # stop everything `up` started
    python scripts/stack/stack.py status

Standard library only (like scripts/kafka/broker.py, which it reuses for the broker); the Tryton
server runs from `.venv-erp`. Starting, waiting for, stopping and killing the Java servers (Kafka,
Connect) is scripts/server_process.py, the one implementation the broker and the stack share.
Every server listens on 127.0.0.1 on a free port; `up` writes the ports and pids to
`<dir>/stack.json` and prints the RETURNSYNC_* variables (`--env-file` also writes them to a file
for `source`). The tests use `Stack` directly (tests/live/conftest.py).

- PostgreSQL: Debian's binaries (/usr/lib/postgresql/<v>/bin), `initdb` once into `<dir>/pg`,
  `wal_level=logical`, trust authentication on 127.0.0.1 only (throw-away local cluster).
- Tryton 8.2 on that PostgreSQL: the reference setup of DESIGN §8 is built once by
  `erp/setup_db.py --postgresql` (~30 s) and cached as a dump; each `up` restores it into a fresh
  database `returnsync` (~2 s). The captured tables get `REPLICA IDENTITY FULL` except
  `account_invoice`, kept at `DEFAULT` (DESIGN §13: staging replaces Debezium's
  unavailable-value placeholder with the previous value; the loop test proves it there).
- Apache Kafka (KRaft, one node) from scripts/kafka/broker.py, fresh log directory per `up`.
- Kafka Connect: `org.apache.kafka:connect-runtime` at the broker's version (scripts/stack/pom.xml),
  `ConnectDistributed`, replication factor 1, with Debezium's PostgreSQL connector plugin
  (`debezium-connector-postgres:3.6.1.Final:tar.gz:plugin` from Maven Central) on its
  plugin.path. The connector is registered through Connect's REST API (`CONNECTOR_CONFIG`).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent
CACHE = PROJECT_ROOT / ".cache"
CONNECT_LIB = Path(os.environ.get("RETURNSYNC_CONNECT_LIB", CACHE / "connect" / "lib"))
PLUGIN_DIR = CACHE / "connect" / "plugins"
DEBEZIUM_VERSION = "3.6.1.Final"
DEBEZIUM_ARTIFACT = f"io.debezium:debezium-connector-postgres:{DEBEZIUM_VERSION}:tar.gz:plugin"
DEFAULT_DIR = CACHE / "stack" / "dev"
ERP_VENV = PROJECT_ROOT / ".venv-erp"
DATABASE = "returnsync"
CONNECT_HEAP = os.environ.get("RETURNSYNC_CONNECT_HEAP", "-Xms128m -Xmx512m")

# DESIGN §2.2: the Tryton tables returnsync reads
ERP_TABLES = (
    "sale_sale",
    "sale_line",
    "account_invoice",
    "account_invoice_line",
    "stock_move",
    "stock_location",
    "stock_shipment_out_return",
    "product_product",
    "currency_currency",
    "party_party",
)
# kept at REPLICA IDENTITY DEFAULT: an update that leaves its TOASTed `description` unchanged
# carries Debezium's placeholder, which staging replaces with the previous value
DEFAULT_IDENTITY = frozenset({"account_invoice"})
PLACEHOLDER = "__debezium_unavailable_value"
CONNECTOR_NAME = "erp"


def connector_config(pg_port: int, slot: str = "returnsync_erp") -> dict[str, str]:
    """The Debezium PostgreSQL connector as DESIGN §13 configures it."""
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": "127.0.0.1",
        "database.port": str(pg_port),
        "database.user": "postgres",
        "database.password": "unused-trust-auth",
        "database.dbname": DATABASE,
        "topic.prefix": "erp",
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": "returnsync_erp",
        "publication.autocreate.mode": "filtered",
        "table.include.list": ",".join(f"public.{t}" for t in ERP_TABLES),
        "decimal.handling.mode": "precise",
        "snapshot.mode": "initial",
        "unavailable.value.placeholder": PLACEHOLDER,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "tombstones.on.delete": "true",
        "poll.interval.ms": "200",
        # the broker does not auto-create topics: Connect creates Debezium's, one partition each
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
        "topic.creation.default.cleanup.policy": "delete",
    }


def load_server_process():
    """scripts/server_process.py: the background-process handling shared with the broker."""
    name = "returnsync_server_process"  # the name scripts/kafka/broker.py loads it under
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "server_process.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_server_process = load_server_process()
free_port = _server_process.free_port
_alive = _server_process.alive
_stop_pid = _server_process.stop_pid
_tail = _server_process.tail


def load_broker_module():
    """`scripts/kafka/broker.py` as a module (it is a script, not a package)."""
    name = "returnsync_kafka_broker"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "kafka" / "broker.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# -- fetching ------------------------------------------------------------------------------------


def fetch_connect(quiet: bool = True) -> Path:
    """Connect's jars into CONNECT_LIB (Maven, scripts/stack/pom.xml); a no-op once there."""
    if any(CONNECT_LIB.glob("connect-runtime-*.jar")):
        return CONNECT_LIB
    cmd = ["mvn", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies"]
    cmd += [f"-Dconnect.lib.dir={CONNECT_LIB}"] + (["-q"] if quiet else [])
    print(f"fetching Kafka Connect jars from Maven Central into {CONNECT_LIB} ...", file=sys.stderr)
    subprocess.run(cmd, check=True)
    if not any(CONNECT_LIB.glob("connect-runtime-*.jar")):
        raise RuntimeError(f"Maven ran but no connect-runtime jar is in {CONNECT_LIB}")
    return CONNECT_LIB


def _maven_repo() -> Path:
    out = subprocess.run(
        ["mvn", "-B", "-q", "help:evaluate", "-Dexpression=settings.localRepository",
         "-DforceStdout"],
        capture_output=True, text=True,
    )  # fmt: skip
    text = out.stdout.strip().splitlines()[-1:] if out.returncode == 0 else []
    return Path(text[0]) if text and text[0].startswith("/") else Path.home() / ".m2" / "repository"


def fetch_debezium(quiet: bool = True) -> Path:
    """Debezium's PostgreSQL connector plugin, unpacked into PLUGIN_DIR (Kafka Connect's
    plugin.path). The plugin archive bundles the connector's dependencies (STACK_NOTES)."""
    marker = PLUGIN_DIR / f".debezium-{DEBEZIUM_VERSION}"
    if marker.exists():
        return PLUGIN_DIR
    cmd = ["mvn", "-B", "dependency:get", "-Dtransitive=false", f"-Dartifact={DEBEZIUM_ARTIFACT}"]
    print(f"fetching {DEBEZIUM_ARTIFACT} from Maven Central ...", file=sys.stderr)
    subprocess.run(cmd + (["-q"] if quiet else []), check=True)
    archive = (
        _maven_repo() / "io" / "debezium" / "debezium-connector-postgres" / DEBEZIUM_VERSION
        / f"debezium-connector-postgres-{DEBEZIUM_VERSION}-plugin.tar.gz"
    )  # fmt: skip
    if not archive.exists():
        raise RuntimeError(f"Maven ran but {archive} is missing")
    shutil.rmtree(PLUGIN_DIR, ignore_errors=True)
    staging = PLUGIN_DIR.with_name("plugins.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    staging.rename(PLUGIN_DIR)
    marker.write_text(str(archive) + "\n")
    return PLUGIN_DIR


def fetch(quiet: bool = True) -> None:
    load_broker_module().fetch(quiet)
    fetch_connect(quiet)
    fetch_debezium(quiet)


# -- PostgreSQL ----------------------------------------------------------------------------------


def pg_bin() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "postgres").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")


@dataclass
class Postgres:
    """A local cluster in `dir` (initdb once), `wal_level=logical`, 127.0.0.1 only."""

    dir: Path
    port: int = 0

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/"

    def _as_user(self) -> list[str]:
        # initdb and postgres refuse to run as root
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def init_once(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        done = subprocess.run(
            [*self._as_user(), str(pg_bin() / "initdb"), "-D", str(self.data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        self.init_once()
        self.port = self.port or free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
            "-c wal_level=logical -c max_replication_slots=8 -c max_wal_senders=8 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC "
            "-c max_connections=60 -c shared_buffers=64MB"
        )
        done = subprocess.run(
            [*self._as_user(), str(pg_bin() / "pg_ctl"), "-D", str(self.data), "-o", options,
             "-l", str(self.log_file), "-w", "-t", "60", "start"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL did not start: {done.stdout}{done.stderr}\n{_tail(self.log_file)}"
            )

    def running_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def stop(self) -> None:
        if self.running_pid() is None:
            return
        subprocess.run(
            [*self._as_user(), str(pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast",
             "-w", "-t", "60", "stop"],
            capture_output=True,
        )  # fmt: skip

    def psql(self, sql: str, db: str = "postgres") -> str:
        done = subprocess.run(
            [str(pg_bin() / "psql"), self.uri + db, "-v", "ON_ERROR_STOP=1", "-q", "-At",
             "-c", sql],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {db}: {done.stderr.strip()}")
        return done.stdout


# -- Tryton on PostgreSQL ------------------------------------------------------------------------


def _erp_server_module():
    name = "returnsync_erp_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "erp" / "server.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def prepared_dump(pg: Postgres) -> Path:
    """The reference database's cached dump, built on `pg` by erp/setup_db.py if missing."""
    python = ERP_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `make erp-install` first")
    out = subprocess.run(
        [str(python), str(PROJECT_ROOT / "erp" / "setup_db.py"), "--postgresql", pg.uri,
         "--pg-bin", str(pg_bin())],
        check=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


def restore_erp_database(pg: Postgres) -> None:
    """A fresh `returnsync` database from the prepared dump, captured tables' identity set."""
    dump = prepared_dump(pg)
    pg.psql(f'drop database if exists "{DATABASE}" with (force)')
    pg.psql(f"create database \"{DATABASE}\" encoding 'UTF8' template template0")
    done = subprocess.run(
        [str(pg_bin() / "pg_restore"), "--no-owner", "-d", pg.uri + DATABASE, str(dump)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pg_restore failed: {done.stderr[-2000:]}")
    identity = "".join(
        f"alter table {t} replica identity {'default' if t in DEFAULT_IDENTITY else 'full'};"
        for t in ERP_TABLES
    )
    pg.psql(identity, DATABASE)


# -- Kafka Connect -------------------------------------------------------------------------------

CONNECT_LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.debezium.name = io.debezium
logger.debezium.level = info
logger.herder.name = org.apache.kafka.connect.runtime.distributed.DistributedHerder
logger.herder.level = info
"""


@dataclass
class Connect:
    """One Kafka Connect worker in distributed mode (`ConnectDistributed`)."""

    dir: Path
    bootstrap: str
    port: int = 0
    group: str = "returnsync-connect"
    _server: object = field(default=None, init=False, repr=False)

    @property
    def server(self):
        """The worker's process (scripts/server_process.py `ServerProcess`)."""
        if self._server is None:
            self._server = _server_process.ServerProcess(
                "Kafka Connect", self.log_file, self.pid_file
            )
        return self._server

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.server.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.dir / "connect.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "connect.pid"

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true",
            "value.converter.schemas.enable": "true",
            "config.storage.topic": f"{self.group}-configs",
            "offset.storage.topic": f"{self.group}-offsets",
            "status.storage.topic": f"{self.group}-status",
            "config.storage.replication.factor": "1",
            "offset.storage.replication.factor": "1",
            "status.storage.replication.factor": "1",
            "offset.storage.partitions": "1",
            "status.storage.partitions": "1",
            "offset.flush.interval.ms": "1000",
            "listeners": f"http://127.0.0.1:{self.port}",
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": str(self.port),
            "plugin.path": str(PLUGIN_DIR),
            "plugin.discovery": "only_scan",
            "topic.creation.enable": "true",
        }
        config = self.dir / "worker.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(CONNECT_LOG4J2)
        return config

    def command(self) -> list[str]:
        config = self.write_config()
        classpath = os.pathsep.join(str(p) for p in sorted(fetch_connect().glob("*.jar")))
        return [
            "java", *CONNECT_HEAP.split(), "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp", classpath, "org.apache.kafka.connect.cli.ConnectDistributed", str(config),
        ]  # fmt: skip

    def start(self, timeout: float = 180.0) -> None:
        """A new worker process; returns once its REST API lists Debezium's connector."""
        fetch_debezium()
        self.port = self.port or free_port()
        self.server.start(
            self.command(), ready=lambda _log: self._serves_debezium(), timeout=timeout, poll=0.5
        )

    def _serves_debezium(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            plugins = self.rest("GET", "/connector-plugins")
            return any(p["class"].endswith("PostgresConnector") for p in plugins)
        return False

    def running_pid(self) -> int | None:
        return self.server.running_pid()

    def kill(self) -> None:
        """SIGKILL (the crash the loop test makes): no offsets flushed, no clean shutdown."""
        self.server.kill()

    def stop(self) -> None:
        self.server.stop(grace=20.0)

    def rest(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def register(self, name: str, config: dict[str, str], timeout: float = 120.0) -> None:
        """PUT the connector's config (create or update) and wait until its task runs."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.rest("PUT", f"/connectors/{name}/config", config)
                break
            except urllib.error.HTTPError as exc:  # 409: the worker is still rebalancing
                if exc.code != 409 or time.monotonic() > deadline:
                    raise RuntimeError(f"registering {name}: {exc.code} {exc.read()!r}") from None
                time.sleep(0.5)
        self.wait_running(name, deadline - time.monotonic())

    def wait_running(self, name: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                last = self.rest("GET", f"/connectors/{name}/status")
                tasks = last.get("tasks") or []
                states = {t["state"] for t in tasks}
                if last["connector"]["state"] == "RUNNING" and states == {"RUNNING"}:
                    return
                if "FAILED" in states or last["connector"]["state"] == "FAILED":
                    trace = next((t.get("trace", "") for t in tasks if t.get("trace")), "")
                    raise RuntimeError(f"connector {name} failed: {trace[:3000]}")
            time.sleep(0.5)
        raise TimeoutError(f"connector {name} not running after {timeout:.0f} s: {last}")


# -- the whole stack -----------------------------------------------------------------------------


@dataclass
class Stack:
    """PostgreSQL + Tryton + Kafka + Kafka Connect (+ the registered Debezium connector).

    `dir` holds everything of this stack (`pg/`, `kafka/`, `connect/`, `tryton/`, `stack.json`).
    The PostgreSQL cluster is initialized once and kept; the ERP database, the Kafka log and the
    Connect state are fresh on every `up`.
    """

    dir: Path = DEFAULT_DIR
    pg: Postgres | None = None
    broker: object | None = None
    connect: Connect | None = None
    tryton: object | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def up(self, *, connector: bool = True) -> Stack:
        self.dir = Path(self.dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._up(connector)
        except BaseException:
            self.down()
            raise
        self.save()
        return self

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)

    def _up(self, connector: bool) -> None:
        t = time.monotonic()
        fetch()
        self._timed("fetch", t)
        # Kafka + Connect (JVMs) start in a thread while PostgreSQL and Tryton start here
        broker_mod = load_broker_module()
        kafka_dir, connect_dir = self.dir / "kafka", self.dir / "connect"
        shutil.rmtree(kafka_dir, ignore_errors=True)
        shutil.rmtree(connect_dir, ignore_errors=True)
        self.broker = broker_mod.Broker(
            dir=kafka_dir, port=free_port(), controller_port=free_port()
        )
        self.connect = Connect(connect_dir, self.broker.bootstrap)
        failures: list[BaseException] = []

        def jvms() -> None:
            try:
                started = time.monotonic()
                self.broker.start()
                self._timed("kafka", started)
                started = time.monotonic()
                self.connect.start()
                self._timed("connect", started)
            except BaseException as exc:  # re-raised by the caller
                failures.append(exc)

        thread = threading.Thread(target=jvms, name="stack-jvms", daemon=True)
        thread.start()
        try:
            t = time.monotonic()
            self.pg = Postgres(self.dir / "pg")
            self.pg.start()
            self._timed("postgresql", t)
            t = time.monotonic()
            restore_erp_database(self.pg)
            self._timed("erp_database", t)
            t = time.monotonic()
            self.tryton = self._start_tryton()
            self._timed("tryton", t)
        finally:
            thread.join()
        if failures:
            raise failures[0]
        if connector:
            t = time.monotonic()
            self.register_connector()
            self._timed("connector", t)

    def _start_tryton(self):
        server = _erp_server_module()
        directory = self.dir / "tryton"
        directory.mkdir(parents=True, exist_ok=True)
        return server.start(directory, database_uri=self.pg.uri, fresh=False, timeout=120)

    def register_connector(self) -> None:
        self.connect.register(CONNECTOR_NAME, connector_config(self.pg.port))

    def restart_connect(self) -> None:
        """A new worker process on the same port and group (after `connect.kill()`)."""
        self.connect.server.proc = None
        self.connect.start()
        self.connect.wait_running(CONNECTOR_NAME)

    def env(self) -> dict[str, str]:
        return {
            "RETURNSYNC_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "RETURNSYNC_ERP_URL": self.tryton.url,
            "RETURNSYNC_ERP_DATABASE": self.tryton.database,
            "RETURNSYNC_ERP_USER": self.tryton.user,
            "RETURNSYNC_ERP_PASSWORD": self.tryton.password,
            "RETURNSYNC_STACK_CONNECT_URL": self.connect.url,
            "RETURNSYNC_STACK_PG_URI": self.pg.uri + DATABASE,
        }

    def save(self) -> None:
        state = {
            "pg_port": self.pg.port,
            "tryton_pid": self.tryton.process.pid,
            "kafka_pid": self.broker.running_pid(),
            "connect_pid": self.connect.running_pid(),
            "env": self.env(),
            "timings": self.timings,
        }
        (self.dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n")

    def down(self) -> None:
        """Stop whatever runs, newest first (Connect, Kafka, Tryton, PostgreSQL)."""
        if self.connect is not None:
            self.connect.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.tryton is not None:
            self.tryton.stop()
        if self.pg is not None:
            self.pg.stop()
        (self.dir / "stack.json").unlink(missing_ok=True)


def down_from_state(directory: Path) -> bool:
    """Stop a stack started by another process (`up` in the background) from its stack.json."""
    directory = directory.resolve()
    state_file = directory / "stack.json"
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    for key in ("connect_pid", "kafka_pid", "tryton_pid"):
        _stop_pid(state.get(key), grace=30)
    Postgres(directory / "pg", state.get("pg_port", 0)).stop()
    state_file.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["fetch", "up", "down", "status"], help="what to do")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="stack directory")
    parser.add_argument("--env-file", type=Path, default=None, help="also write the env here")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.action == "fetch":
        fetch(quiet=False)
        return 0
    if args.action == "down":
        print("stopped" if down_from_state(directory) else f"no stack runs from {directory}")
        return 0
    state_file = directory / "stack.json"
    running = state_file.exists() and _alive(json.loads(state_file.read_text()).get("tryton_pid"))
    if args.action == "status":
        print(state_file.read_text() if running else "stopped")
        return 0 if running else 1
    if running:
        print(f"a stack already runs from {directory} (make stack-down stops it)", file=sys.stderr)
        return 1
    down_from_state(directory)  # leftovers of a stack that did not stop cleanly
    started = time.monotonic()
    stack = Stack(directory).up()
    stack.timings["total"] = round(time.monotonic() - started, 1)
    stack.save()
    lines = [f"export {k}={v}" for k, v in stack.env().items()]
    if args.env_file:
        args.env_file.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"stack up in {stack.timings['total']} s {stack.timings}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
