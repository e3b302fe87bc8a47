"""The Dagster instance's event log, stored as Dagster stores it, for a fraction of the cost.

`ReturnsyncEventLogStorage` is Dagster's own `SqliteEventLogStorage` (the same files under
`$DAGSTER_HOME/history/runs/`: one SQLite database per run plus `index.db`, the same schema and
rows, so the UI, sensors, `dagster` CLI and every reader see exactly what they would), configured
through `dagster.yaml`'s pluggable `event_log_storage` (`runner.instance()` and the Makefile write
it for a new instance). What changes is how it writes, measured in bench/README.md ("Dagster's
bookkeeping of an increment"):

- **One engine per database, its connections kept.** Dagster's class builds a SQLAlchemy engine
  and opens a new SQLite connection for every event, twice or three times for an asset or check
  event (run database, index, and a third connection for `has_table`); here each database keeps
  one engine (the run databases of the last few runs and the index), and `has_table` answers
  from a cache once a table was seen.
- **`synchronous=NORMAL` in WAL mode** (Dagster puts every database it creates in WAL mode; here
  a new one is put in WAL before its tables are created, not after; a database found in another
  journal mode keeps SQLite's default). With WAL, NORMAL syncs at checkpoints
  instead of at every commit: each committed event is in the WAL file, so a killed process loses
  nothing, and the database stays consistent on a power cut, which may lose the last events
  committed since the last checkpoint (a run's newest event records, shown as a run that never
  finished). This instance is bookkeeping of runs; the warehouse, which holds the data, does not
  depend on it.
- **One transaction per event, per database**: an asset or check event's index rows (the
  mirrored event, its tags, the asset key row, the check execution row) are one transaction, not
  three. `store_event_batch` (Dagster batches the planned-materialization and planned-check
  events of a run's start when `DAGSTER_EVENT_BATCH_SIZE` is set) writes the whole batch in one
  transaction per database, the index's committed first: the index is the database other
  processes write too, so when a batch fails it is there, before anything was committed, and
  Dagster then stores the events one by one.

The UI's live run log follows a run through Dagster's `watch`, which waits for the run
database's file to change: Dagster's storage closes its connection after each event and SQLite
then checkpoints the WAL into the file; with the connection kept the events stay in the `-wal`
file, so the file's time is set after each event instead (`_touch`; no sync).

Concurrency is SQLite's, as with Dagster's class: readers (the webserver, `dagster dev`'s
daemon, a second instance) read while a run writes (WAL); writers wait up to Dagster's busy
timeout. Nothing here holds a lock between events: every transaction commits before its call
returns.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import sqlalchemy as db
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine

RUN_ENGINES_KEPT = 4  # run databases whose engine stays open (a run writes only its own)
# the events whose store touches the index database as well as the run's
INDEXED_EVENTS = frozenset(
    ASSET_EVENTS | ASSET_CHECK_EVENTS | set(EVENT_TYPE_TO_PIPELINE_RUN_STATUS)
)


def _on_connect(dbapi_connection, _record) -> None:
    """Each new SQLite connection: `synchronous=NORMAL` when the database is in WAL mode. A new,
    empty database is put in WAL mode first (Dagster's `_initdb` does so after creating its
    tables, each of them synced in the rollback journal: ~0.4-1.5 s a run at load 6)."""
    cursor = dbapi_connection.cursor()
    try:
        if cursor.execute("PRAGMA page_count").fetchone()[0] == 0:
            cursor.execute("PRAGMA journal_mode=WAL")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class ReturnsyncEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log storage with kept connections, WAL + `synchronous=NORMAL`,
    and one transaction per database for an event and for a batch (module doc).

    In `dagster.yaml`:

        event_log_storage:
          module: pipelines.eventlog
          class: ReturnsyncEventLogStorage
          config:
            base_dir: /absolute/path/to/dagster_home/history/runs
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._open = threading.local()  # shard -> the connection open in this thread
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)
        # re-entrant: an event's index transaction wraps the run database's write (store_event)
        self._db_lock = threading.RLock()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> ReturnsyncEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    # --- connections ----------------------------------------------------------------------

    def _engine(self, shard: str) -> Engine:
        if self._engines_pid != os.getpid():  # a forked child never shares its parent's sockets
            self._engines = OrderedDict()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            pool_size=1,
            max_overflow=4,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        db.event.listen(engine, "connect", _on_connect)
        self._engines[shard] = engine
        runs = [name for name in self._engines if name != INDEX_SHARD_NAME]
        for old in runs[: max(0, len(runs) - RUN_ENGINES_KEPT)]:
            # a connection still checked out (an outer transaction) stays valid until it returns
            self._engines.pop(old).dispose()
        return engine

    def _open_connections(self) -> dict[str, Connection]:
        if not hasattr(self._open, "shards"):
            self._open.shards = {}
        return self._open.shards

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            open_now = self._open_connections()
            if shard in open_now:  # inside this thread's transaction on the shard: join it
                yield open_now[shard]
                return
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                open_now[shard] = conn
                try:
                    yield conn
                finally:
                    del open_now[shard]

    def has_table(self, table_name: str) -> bool:
        """Whether the index database has the table; a table once seen is never dropped."""
        if table_name in self._tables:
            return True
        with self.index_connection() as conn:
            found = bool(conn.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found

    # --- writes ---------------------------------------------------------------------------

    def store_event(self, event: EventLogEntry) -> None:
        """Dagster's store, its index writes in one transaction."""
        if event.is_dagster_event and event.dagster_event_type in INDEXED_EVENTS:
            with self.index_connection():
                super().store_event(event)
        else:
            super().store_event(event)
        self._touch(event.run_id)

    def _touch(self, run_id: str) -> None:
        """Tell the run's watchers (the UI's live run log: `watch` follows the run database's
        file) that it has new events. Dagster's storage closes its connection after each event,
        and SQLite then checkpoints the WAL into the file, which changes it; a kept connection
        leaves the events in the `-wal` file, so the file's time is set instead (no sync)."""
        if self._open_connections().get(run_id) is None:  # not inside a batch's transaction
            with contextlib.suppress(OSError):
                os.utime(self.path_for_shard(run_id))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """The batch in one transaction per database, the index's committed first (module doc)."""
        run_ids = list(dict.fromkeys(event.run_id for event in events))
        with ExitStack() as stack:
            for run_id in run_ids:
                stack.enter_context(self.run_connection(run_id))
            if any(e.is_dagster_event and e.dagster_event_type in INDEXED_EVENTS for e in events):
                stack.enter_context(self.index_connection())
            for event in events:
                super().store_event(event)
        for run_id in run_ids:
            self._touch(run_id)

    # --- files ----------------------------------------------------------------------------

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._dispose_engines()  # before the run databases' files are removed
        super().wipe()

    def upgrade(self) -> None:
        self._dispose_engines()
        super().upgrade()

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()
