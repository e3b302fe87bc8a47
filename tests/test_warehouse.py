"""The warehouse helpers every landing path shares."""

import pyarrow as pa

from pipelines.lib import warehouse
from pipelines.lib.warehouse import DeadLetter, write_dead_letters


def test_dead_letters_are_idempotent_and_leave_the_connection_usable(tmp_path):
    """DuckDB 2 refuses `register()` while a result is still open (after `fetchone()`): a file
    lander registering its next Arrow batch after writing dead letters crashed on that."""
    db = tmp_path / "w.duckdb"
    warehouse.initialize(db)
    with warehouse.connection(db) as con:
        letters = [DeadLetter("cdc", f"t:0:{i}", "{broken", "value: bad JSON") for i in range(3)]
        assert write_dead_letters(con, letters) == 3
        con.register("next_batch", pa.table({"a": [1, 2]}))  # raised "unfinished result"
        assert con.sql("select sum(a) from next_batch").fetchall() == [(3,)]
        assert write_dead_letters(con, letters[:2]) == 0  # same positions: nothing new
        assert warehouse.table_exists(con, "meta", "dead_letters")
        con.register("again", pa.table({"b": [1]}))
        assert warehouse.scalar(con, "select count(*) from meta.dead_letters") == 3
