"""Every query of docs/analyst-questions.md runs on a real published landscape and answers.

A query that stops working (a renamed column, a changed grain) fails here, not in front of an
analyst.
"""

import re
from decimal import Decimal

import duckdb
import pytest

from pipelines.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "analyst-questions.md"


def questions() -> dict[str, str]:
    """Heading -> the SQL block under it."""
    found = {}
    for section in re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
        if blocks:
            found[title] = blocks[0]
    return found


def test_the_doc_has_the_five_questions():
    assert set(questions()) == {
        "Refund cycle time by channel and week",
        "Receipt-to-ERP-posting latency by warehouse",
        "Top return reasons by product",
        "Disposition mix by warehouse",
        "Open mismatches and amount at risk by rule and age",
        # Bottlenecks (checked against the simulator's truth in tests/trace/)
        "Stage latency by transition and warehouse, last 30 days",
        "Open stages past their SLA by warehouse and channel",
        "The bottleneck per channel this week",
    }


@pytest.fixture(scope="module")
def published(simulated_run):
    con = duckdb.connect(str(simulated_run.settings.analyst_db_path), read_only=True)
    yield con
    con.close()


def answer(con, title):
    relation = con.sql(questions()[title])
    return relation.columns, relation.fetchall()


@pytest.mark.slow
@pytest.mark.parametrize("title", sorted(questions()))
def test_question_answers_on_a_landscape(published, title):
    columns, rows = answer(published, title)
    assert rows, f"{title!r} returned no rows on a 200-return landscape"
    assert len(set(columns)) == len(columns)


@pytest.mark.slow
def test_cycle_times_are_ordered_and_channels_known(published):
    columns, rows = answer(published, "Refund cycle time by channel and week")
    for row in rows:
        rec = dict(zip(columns, row, strict=True))
        assert rec["channel"] in {"shopify", "amazon", "b2b"}
        assert 0 <= rec["p50_hours"] <= rec["p90_hours"]
    assert {dict(zip(columns, r, strict=True))["channel"] for r in rows} == {
        "shopify",
        "amazon",
        "b2b",
    }


@pytest.mark.slow
def test_disposition_shares_add_up_per_warehouse(published):
    columns, rows = answer(published, "Disposition mix by warehouse")
    totals: dict[str, Decimal] = {}
    for row in rows:
        rec = dict(zip(columns, row, strict=True))
        totals[rec["warehouse"]] = totals.get(rec["warehouse"], 0) + Decimal(str(rec["pct"]))
    assert totals and all(abs(t - 100) <= Decimal("0.5") for t in totals.values()), totals


@pytest.mark.slow
def test_open_mismatches_match_the_recon_table(published):
    columns, rows = answer(published, "Open mismatches and amount at risk by rule and age")
    by_rule = {}
    for row in rows:
        rec = dict(zip(columns, row, strict=True))
        by_rule[rec["rule"]] = by_rule.get(rec["rule"], 0) + rec["open_mismatches"]
    direct = dict(
        published.execute(
            "select rule, count(*) from recon.mismatches where status = 'open' group by 1"
        ).fetchall()
    )
    assert by_rule == direct and sum(direct.values()) > 0
