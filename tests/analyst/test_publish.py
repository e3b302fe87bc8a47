"""Publishing the marts for analysts: atomic, complete, and without personal data."""

import os
import subprocess
import sys
import time

import duckdb
import pytest

from pipelines.lib.publish import publish
from pipelines.settings import PROJECT_ROOT


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""
        create schema marts;
        create schema recon;
        create schema staging;
        create table marts.returns as
            select 'k1' as return_key, 'LR-1' as rma_number, '#1001' as order_name,
                   'Jane Doe' as customer_name, 'jane@example.com' as customer_email;
        create table recon.mismatches as select 'm1' as mismatch_id, 'stale_return' as rule;
        create table recon.recon_run as
            select timestamptz '2026-11-01 00:00:00+00' as as_of, 24 as posting_grace_h;
        create table staging.stg_erp__parties as select 'Jane Doe' as name;
    """)
    con.close()
    return path


def test_publishes_marts_and_recon_only(warehouse, tmp_path):
    target = tmp_path / "out" / "analyst.duckdb"
    result = publish(warehouse, target)
    assert result.tables == {"marts.returns": 1, "recon.mismatches": 1, "recon.recon_run": 1}
    con = duckdb.connect(str(target), read_only=True)
    tables = {
        f"{s}.{t}"
        for s, t in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
    }
    assert tables == {"marts.returns", "recon.mismatches", "recon.recon_run", "main.published"}
    assert con.execute("select as_of from published").fetchone()[0] == "2026-11-01T00:00:00+00:00"
    con.close()


def test_personal_data_columns_are_withheld(warehouse, tmp_path):
    target = tmp_path / "analyst.duckdb"
    result = publish(warehouse, target)
    assert sorted(result.withheld_columns) == [
        "marts.returns.customer_email",
        "marts.returns.customer_name",
    ]
    con = duckdb.connect(str(target), read_only=True)
    row = con.execute("select * from marts.returns").fetchone()
    con.close()
    assert row == ("k1", "LR-1", "#1001")  # order_name is not personal data and stays


def test_republish_replaces_atomically_and_leaves_no_temporary_files(warehouse, tmp_path):
    target = tmp_path / "analyst.duckdb"
    publish(warehouse, target)
    reader = duckdb.connect(str(target), read_only=True)  # an analyst with the old version open
    con = duckdb.connect(str(warehouse))
    con.execute("insert into recon.mismatches values ('m2', 'unmapped_sku')")
    con.close()
    publish(warehouse, target)
    # the open reader keeps its consistent old version ...
    assert reader.execute("select count(*) from recon.mismatches").fetchone()[0] == 1
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analyst.duckdb", "warehouse.duckdb"]


def test_a_failed_publish_keeps_the_previous_version(warehouse, tmp_path):
    target = tmp_path / "analyst.duckdb"
    publish(warehouse, target)
    before = target.read_bytes()
    with pytest.raises(duckdb.Error):
        publish(tmp_path / "missing" / "warehouse.duckdb", target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analyst.duckdb", "warehouse.duckdb"]


def test_free_text_is_published_only_as_its_mapped_code(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""
        create schema marts;
        create schema recon;
        create schema raw;
        create schema meta;
        create table marts.return_lines as
            select 'l1' as return_line_key, 'size_fit' as reason,
                   'Too small, and call me on 555-0100, Jane' as reason_raw;
        create table marts.dispositions as
            select 'd1' as disposition_key, 'restock' as disposition,
                   'RESTOCK - box torn' as disposition_raw;
        create table recon.mismatches as
            select 'm1' as mismatch_id, 'stale_return' as rule, 'alice' as acknowledged_by,
                   'customer Jane said it was lost' as acknowledgement_note;
        create table raw.returns_saas_webhooks as select '{}' as payload;
        create table meta.dead_letters as select 'x' as raw;
    """)
    con.close()
    target = tmp_path / "analyst.duckdb"
    result = publish(path, target)
    assert sorted(result.free_text_columns) == [
        "marts.dispositions.disposition_raw",
        "marts.return_lines.reason_raw",
        "recon.mismatches.acknowledgement_note",
    ]
    assert result.withheld_columns == []
    published = duckdb.connect(str(target), read_only=True)
    columns = published.execute(
        "select schema_name, table_name, column_name from duckdb_columns() "
        "where not internal order by schema_name, table_name, column_index"
    ).fetchall()
    published.close()
    assert columns == [
        ("main", "published", "published_at"),
        ("main", "published", "as_of"),
        ("main", "published", "tables"),
        ("main", "published", "models_state"),
        ("main", "published", "seeds_state"),
        ("marts", "dispositions", "disposition_key"),
        ("marts", "dispositions", "disposition"),
        ("marts", "return_lines", "return_line_key"),
        ("marts", "return_lines", "reason"),
        ("recon", "mismatches", "mismatch_id"),
        ("recon", "mismatches", "rule"),
        ("recon", "mismatches", "acknowledged_by"),
    ]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leave(tmp_path, name: str, age_s: float = 0) -> None:
    path = tmp_path / name
    path.write_bytes(b"half a database")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))


def test_leftovers_of_an_interrupted_publish_are_removed_at_the_next(warehouse, tmp_path):
    dead = _dead_pid()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            _leave(tmp_path, f".analyst.duckdb.{dead}.tmp")
            _leave(tmp_path, f".analyst.duckdb.{dead}.tmp.wal")
            _leave(tmp_path, f".analyst.duckdb.{alive.pid}.tmp")  # a publish in progress
            _leave(tmp_path, f".analyst.duckdb.{alive.pid}.tmp.wal")
            _leave(tmp_path, f".analyst.duckdb.{os.getppid()}.tmp.wal", age_s=2 * 3600)
            _leave(tmp_path, f".other.duckdb.{dead}.tmp")  # another target's: not ours to judge
            _leave(tmp_path, "notes.tmp")
            result = publish(warehouse, tmp_path / "analyst.duckdb")
        finally:
            alive.kill()
    assert sorted(result.removed_leftovers) == sorted(
        [
            f".analyst.duckdb.{dead}.tmp",
            f".analyst.duckdb.{dead}.tmp.wal",
            f".analyst.duckdb.{os.getppid()}.tmp.wal",  # alive, but more than an hour old
        ]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            f".analyst.duckdb.{alive.pid}.tmp",
            f".analyst.duckdb.{alive.pid}.tmp.wal",
            f".other.duckdb.{dead}.tmp",
            "analyst.duckdb",
            "notes.tmp",
            "warehouse.duckdb",
        ]
    )


KILLED_PUBLISH = """
import os, sys
from pathlib import Path
import pipelines.lib.publish as publish

real = publish._publishable_columns
def killed(*args, **kwargs):  # the staging file is open and written: die like `kill -9`
    columns = real(*args, **kwargs)
    os._exit(137)
publish._publishable_columns = killed
publish.publish(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_a_killed_publish_leaves_files_that_the_next_publish_removes(warehouse, tmp_path):
    target = tmp_path / "analyst.duckdb"
    publish(warehouse, target)
    before = target.read_bytes()
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUBLISH, str(warehouse), str(target)],
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
    )
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == 137, stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".analyst.duckdb."))
    assert left and all(n.startswith(f".analyst.duckdb.{killed.pid}.tmp") for n in left)
    assert target.read_bytes() == before  # the published copy is untouched
    result = publish(warehouse, target)
    assert sorted(result.removed_leftovers) == left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analyst.duckdb", "warehouse.duckdb"]
