"""The state that cannot be rebuilt from raw survives every migration (pipelines.lib.migrations)."""

from __future__ import annotations

import duckdb

from pipelines.lib.migrations import BASELINE, MIGRATIONS, current_version, migrate
from pipelines.lib.warehouse import connect

# one row of history per table the baseline created, as an older returnsync wrote them
HISTORY = {
    "meta.files_landed": "('abc', 'b2b', 'b2b/a.csv', 3, 1, '2026-11-01 00:00:00+00')",
    "meta.dead_letters": "('b2b', 'abc:4', 'x,y', 'bad row', '2026-11-01 00:00:00+00')",
    "recon.mismatches": "('m1', 'stale_return', 'low', 'LR-1', null, null, null, null, null, "
    "null, null, '2026-10-01 00:00:00+00', '2026-11-01 00:00:00+00', 'acknowledged', null, "
    "'2026-11-02 00:00:00+00', 'alice')",
    "recon.mismatch_history": "('m1', 'acknowledged', '2026-11-02 00:00:00+00', 'alice')",
    "writeback.attempts": "('adj1', 1, '2026-11-02 00:00:00+00', 'created', 'ok')",
}


def _old_warehouse(path) -> None:
    """A warehouse as returnsync wrote it before migrations existed: the baseline DDL only."""
    con = duckdb.connect(str(path))
    con.execute(BASELINE)
    for table, row in HISTORY.items():
        con.execute(f"insert into {table} values {row}")
    con.close()


def test_an_older_warehouse_opens_with_its_history_intact(tmp_path):
    path = tmp_path / "old.duckdb"
    _old_warehouse(path)
    before = {}
    with duckdb.connect(str(path)) as con:
        for table in HISTORY:
            cursor = con.execute(f"select * from {table}")
            rows = cursor.fetchall()
            before[table] = ([d[0] for d in cursor.description], rows)
        assert con.execute(
            "select count(*) from information_schema.tables where table_name = 'schema_migrations'"
        ).fetchall() == [(0,)]

    con = connect(path)  # what every writer does
    try:
        assert current_version(con) == MIGRATIONS[-1].version
        for table, (columns, rows) in before.items():  # a migration may add columns
            names = ", ".join(f'"{c}"' for c in columns)
            assert con.execute(f"select {names} from {table}").fetchall() == rows, table
        applied = con.execute("select version from meta.schema_migrations order by 1").fetchall()
        assert [v for (v,) in applied] == [m.version for m in MIGRATIONS]
    finally:
        con.close()


def test_migrate_is_idempotent_and_versions_are_ordered(tmp_path):
    versions = [m.version for m in MIGRATIONS]
    # versions are applied by set (each helper has its own number), so gaps are fine
    assert versions == sorted(set(versions)), "migrations are listed once each, in order"
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        assert migrate(con) == versions
        assert migrate(con) == []  # cached on the connection
        con.close()
        con = duckdb.connect(str(tmp_path / "w.duckdb"))
        assert migrate(con) == []  # recorded in the warehouse
        assert current_version(con) == versions[-1]
    finally:
        con.close()


def test_a_missing_version_below_the_highest_is_still_applied(tmp_path):
    """A development warehouse that had migration 3 before migration 2 existed gets 2 too."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        migrate(con)
        con.execute("delete from meta.schema_migrations where version = 2")
        con.close()
        con = duckdb.connect(str(tmp_path / "w.duckdb"))
        assert migrate(con) == [2]
        assert current_version(con) == MIGRATIONS[-1].version
    finally:
        con.close()
