"""What a run publishes and reports is the run's own planning (issue 24).

The published copy's `recon.writeback_documents` and the report's adjustment columns come from
`writeback.adjustments`, which planning writes: both steps must follow planning in the main job,
or a run publishes the previous planning's documents. The report's CSV (from the report cache)
must be the report computed from scratch on the warehouse the run left.
"""

from __future__ import annotations

import duckdb

from pipelines.lib.recon.report import build_report, to_csv


def test_the_published_documents_are_this_runs_planning(simulated_run):
    con = duckdb.connect(str(simulated_run.settings.db_path), read_only=True)
    planned = con.execute(
        "select adjustment_id, status from writeback.adjustments "
        "where status in ('planned', 'approved', 'sent') order by 1"
    ).fetchall()
    con.close()
    assert planned, "the landscape plans adjustments"
    published = duckdb.connect(str(simulated_run.settings.analyst_db_path), read_only=True)
    documents = published.execute(
        "select adjustment_id, status from recon.writeback_documents order by 1"
    ).fetchall()
    published.close()
    assert documents == planned


def test_the_report_file_is_the_report_from_scratch(simulated_run):
    con = duckdb.connect(str(simulated_run.settings.db_path), read_only=True)
    con.execute("set timezone = 'UTC'")
    expected = to_csv(build_report(con, status="open").rows)
    con.close()
    files = sorted((simulated_run.settings.data_dir / "reports").glob("mismatches_*.csv"))
    assert files and files[-1].read_text(encoding="utf-8") == expected
    assert "returnsync approve adj-" in expected  # rows name the run's planned adjustments
