"""On a simulated landscape (the session's `simulated_run`, landed by the real main job), more
delivery noise changes nothing in the marts: every CDC change delivered again at a later offset
(so older versions arrive after newer ones), every webhook redelivered in reverse order, every
file drop landed again later. One extra dbt build on a copy of the warehouse."""

from __future__ import annotations

import shutil

from pipelines.lib import warehouse
from pipelines.lib.contracts import CDC_TABLES
from tests.dbt.test_canonical_model import dbt_build, snapshot

FILE_TABLES = ("returns_saas_webhooks", "shopify_refunds", "amazon_returns", "b2b_credit_requests")


def add_noise(con) -> None:
    for table in CDC_TABLES:
        con.execute(
            f"insert into raw.{table.raw_table} select * replace ("
            "_offset + 1000000000 as _offset, _ingested_at + interval 1 hour as _ingested_at"
            f") from raw.{table.raw_table}"
        )
    for table in FILE_TABLES:
        con.execute(
            f"insert into raw.{table} select * replace ("
            "'again/' || _file as _file, 'again' || _file_sha256 as _file_sha256, "
            "(max(_row_number) over (partition by _file_sha256)) + 1 - _row_number as _row_number, "
            "_ingested_at + interval 1 hour as _ingested_at"
            f") from raw.{table}"
        )


def test_more_noise_changes_no_mart(simulated_run, tmp_path):
    original = simulated_run.settings.db_path
    copy = tmp_path / "noisier.duckdb"
    shutil.copy(original, copy)
    with warehouse.connection(copy) as con:
        before = con.execute("select count(*) from raw.erp_sale_sale").fetchone()[0]
        add_noise(con)
        assert con.execute("select count(*) from raw.erp_sale_sale").fetchone()[0] == 2 * before
    # at the run's as_of: the stage marts count what is overdue then
    dbt_build(copy, tmp_path, tests=False, as_of=simulated_run.as_of)
    expected = snapshot(original, exclude=("source_position",))
    assert sum(len(rows) for rows in expected.values()) > 1000
    assert snapshot(copy, exclude=("source_position",)) == expected
