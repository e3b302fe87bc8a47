"""`returnsync adjustments | exceptions | dead-letters | quarantine` and `approve | reject` with
several ids or a filter, on a real warehouse (DESIGN §6, §7, §11).

The rows are written straight into the tables the migrations create, as the planner, the push,
the landing and the quarantine leave them, so these tests do not depend on how they are planned.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.errors import EXIT_FAILED, EXIT_USAGE
from pipelines.lib.warehouse import connect
from pipelines.lib.writeback.plan import exception_id_for

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOSTILE_RMA = '=HYPERLINK("http://x","y")'

# adjustment id -> (status, rule, rma, amount, currency, quantity, age in days, approved_by)
ADJUSTMENTS = {
    "adj-a1": ("planned", "receipt_not_posted", "RMA-1", "120.00", "EUR", "2", 5, None),
    "adj-a2": ("planned", "refund_without_credit", "RMA-2", "480.00", "GBP", None, 4, None),
    "adj-a3": ("planned", "refund_without_credit", "RMA-3", "90.00", "EUR", None, 3, None),
    "adj-a4": ("approved", "refund_without_credit", "RMA-4", "20.00", "EUR", None, 2, "auto"),
    "adj-a5": ("sent", "receipt_not_posted", "RMA-5", "35.00", "EUR", "1", 9, "auto"),
    "adj-a6": ("rejected", "receipt_not_posted", "RMA-6", "60.00", "USD", "1", 8, "bob"),
    "adj-a7": ("exception", "refund_without_credit", HOSTILE_RMA, "75.00", "USD", None, 1, "ann"),
}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "w.duckdb"
    con = connect(path)  # the migrations create every table
    try:
        for adj, (status, rule, rma, amount, cur, qty, age, by) in ADJUSTMENTS.items():
            at = T0 - timedelta(days=age)
            con.execute(
                """
                insert into writeback.adjustments (adjustment_id, idempotency_key, mismatch_id,
                    rule, rma_number, sku, action, payload, amount, quantity, currency, status,
                    approved_by, approved_at, decided_reason, erp_document, sent_at,
                    created_at, updated_at)
                values (?, ?, ?, ?, ?, 'P-1', 'create_credit_note', '{}', ?, ?, ?, ?, ?, ?, ?,
                    ?, ?, ?, ?)
                """,
                [
                    adj,
                    f"returnsync-{adj}",
                    f"m-{adj}",
                    rule,
                    rma,
                    Decimal(amount),
                    None if qty is None else Decimal(qty),
                    cur,
                    status,
                    by,
                    at if by else None,
                    "over the limit" if status == "planned" else None,
                    '{"number": "CN-5"}' if status == "sent" else None,
                    at if status == "sent" else None,
                    at,
                    at,
                ],
            )
        exceptions = [
            (exception_id_for("adjustment", "adj-a7"), "adj-a7", "open", "ERP refused", 1),
            ("exc-dup", None, "open", "needs a person: credited twice", 2),
            ("exc-old", None, "closed", "needs a person: unmapped sku", 30),
        ]
        for exc, adj, status, reason, age in exceptions:
            at = T0 - timedelta(days=age)
            con.execute(
                """
                insert into writeback.exceptions (exception_id, mismatch_id, adjustment_id, rule,
                    rma_number, sku, reason, message, status, created_at, updated_at, closed_at)
                values (?, 'm', ?, 'duplicate_credit', 'RMA-9', null, ?, 'period closed', ?, ?,
                    ?, ?)
                """,
                [exc, adj, reason, status, at, at, at if status == "closed" else None],
            )
        con.execute(
            "insert into meta.dead_letters values "
            "('cdc', 'erp.public.sale_sale:0:5', '{\"customer\": \"Ann Smith\"}', "
            "'not JSON: \x1b[31mred', ?), "
            "('shopify', 'abc:7', 'x', 'missing field id', ?)",
            [T0 - timedelta(days=1), T0 - timedelta(days=20)],
        )
        con.execute(
            "insert into meta.quarantine values ('sha1', 'amazon', 'amazon/r.tsv', "
            "'quarantine/amazon/r.tsv', 'header: missing column Order ID', ?)",
            [T0],
        )
    finally:
        con.close()
    return path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="returnsync")


def as_json(*args) -> dict:
    result = cli(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def ids(data: dict, key: str = "adjustment_id") -> list[str]:
    return [r[key] for r in data["rows"]]


def statuses(db) -> dict[str, tuple]:
    data = as_json("adjustments", "--db", db)
    return {r["adjustment_id"]: (r["status"], r["approved_by"]) for r in data["rows"]}


def test_adjustments_list_filters_and_formats(db):
    every = as_json("adjustments", "--db", db)
    assert ids(every) == [f"adj-a{n}" for n in (7, 4, 3, 2, 1, 6, 5)]  # newest first
    assert as_json("adjustments", "--status", "planned", "--db", db)["count"] == 3
    cheap = as_json("adjustments", "--currency", "eur", "--max-amount", "100", "--db", db)
    assert ids(cheap) == ["adj-a4", "adj-a3", "adj-a5"]
    row = cheap["rows"][1]
    assert (row["amount"], row["currency"]) == ("90.00", "EUR")  # exact, with its currency
    assert ids(as_json("adjustments", "--rule", "receipt_not_posted", "--db", db)) == [
        "adj-a1",
        "adj-a6",
        "adj-a5",
    ]
    since = (T0 - timedelta(days=3)).date().isoformat()
    assert ids(as_json("adjustments", "--since", since, "--db", db)) == [
        "adj-a7",
        "adj-a4",
        "adj-a3",
    ]
    assert ids(as_json("adjustments", "--rma", "rma-2", "--db", db)) == ["adj-a2"]
    assert as_json("adjustments", "--status", "sent", "--db", db)["rows"][0]["erp_document"] == (
        "CN-5"
    )

    table = cli("adjustments", "--status", "planned", "--db", db)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["adjustment_id", "status", "rule", "rma_number"]
    fields = next(line for line in lines if line.startswith("adj-a2")).split()
    assert fields[:3] == ["adj-a2", "planned", "refund_without_credit"]
    assert fields[fields.index("480.00") + 1] == "GBP"  # the amount beside its currency
    assert lines[-1] == "3 adjustment(s)"

    sheet = cli("adjustments", "--format", "csv", "--db", db)
    assert sheet.exit_code == 0, sheet.output
    rows = list(csv.DictReader(io.StringIO(sheet.output)))
    assert len(rows) == 7
    assert rows[0]["rma_number"] == "'" + HOSTILE_RMA  # formula-safe
    assert rows[0]["amount"] == "75.00" and rows[0]["currency"] == "USD"

    # an amount limit without its currency is refused; so is a currency that is not ISO 4217
    assert cli("adjustments", "--max-amount", "100", "--db", db).exit_code == EXIT_USAGE
    assert cli("adjustments", "--currency", "euro", "--db", db).exit_code == EXIT_USAGE
    assert cli("adjustments", "--since", "last week", "--db", db).exit_code == EXIT_USAGE


def test_exceptions_carry_their_adjustments_money(db):
    open_ = as_json("exceptions", "--db", db)
    assert ids(open_, "exception_id") == [exception_id_for("adjustment", "adj-a7"), "exc-dup"]
    first = open_["rows"][0]
    assert (first["adjustment_id"], first["amount"], first["currency"]) == (
        "adj-a7",
        "75.00",
        "USD",
    )
    assert open_["rows"][1]["amount"] is None and open_["rows"][1]["currency"] is None
    assert as_json("exceptions", "--status", "all", "--db", db)["count"] == 3
    assert ids(as_json("exceptions", "--reason", "TWICE", "--db", db), "exception_id") == [
        "exc-dup"
    ]
    assert as_json("exceptions", "--currency", "USD", "--db", db)["count"] == 1


def test_dead_letters_and_quarantine(db):
    letters = as_json("dead-letters", "--db", db)
    assert [r["source"] for r in letters["rows"]] == ["cdc", "shopify"]
    assert "raw" not in letters["rows"][0]  # the record may hold personal data: only on request
    raw = as_json("dead-letters", "--raw", "--source", "cdc", "--db", db)
    assert raw["rows"][0]["raw"] == '{"customer": "Ann Smith"}'
    assert as_json("dead-letters", "--error", "missing", "--db", db)["count"] == 1
    assert as_json("dead-letters", "--since", "2026-10-25", "--db", db)["count"] == 1
    table = cli("dead-letters", "--db", db)
    assert table.exit_code == 0 and "\x1b" not in table.output  # no terminal escape goes out
    assert "not JSON: ?[31mred" in table.output and "Ann Smith" not in table.output

    files = as_json("quarantine", "--db", db)
    assert [(r["source"], r["reason"]) for r in files["rows"]] == [
        ("amazon", "header: missing column Order ID")
    ]
    assert as_json("quarantine", "--source", "b2b", "--db", db)["count"] == 0
    assert cli("quarantine", "--source", "b2b", "--db", db).output == "no quarantined file(s)\n"


def test_approve_several_ids_and_again(db):
    done = cli("approve", "adj-a1", "adj-a2", "--by", "alice", "--db", db)
    assert done.exit_code == 0, done.output
    assert "adj-a1 approved by alice" in done.output and "adj-a2 approved by alice" in done.output
    assert statuses(db)["adj-a1"] == ("approved", "alice")

    again = cli("approve", "adj-a1", "adj-a4", "--by", "carl", "--db", db)
    assert again.exit_code == 0, again.output
    assert "adj-a1 already approved by alice" in again.output
    assert "adj-a4 already approved by auto" in again.output
    assert statuses(db)["adj-a1"] == ("approved", "alice")  # who and when unchanged

    # one id that cannot be approved (rejected) or does not exist: nothing is done
    blocked = cli("approve", "adj-a3", "adj-a6", "--by", "alice", "--db", db)
    assert blocked.exit_code == EXIT_FAILED, blocked.output
    assert "adj-a6 is rejected" in blocked.output
    unknown = cli("approve", "adj-a3", "adj-nope", "--by", "alice", "--db", db)
    assert unknown.exit_code == EXIT_FAILED and "no adjustment 'adj-nope'" in unknown.output
    assert statuses(db)["adj-a3"] == ("planned", None)

    # an adjustment in the exception queue is retried by its id; its exception closes
    retry = cli("approve", "adj-a7", "--by", "alice", "--db", db)
    assert retry.exit_code == 0, retry.output
    assert ids(as_json("exceptions", "--db", db), "exception_id") == ["exc-dup"]


def test_approve_by_filter_lists_first_and_acts_only_with_yes(db):
    listed = cli("approve", "--max-amount", "100", "--currency", "EUR", "--by", "al", "--db", db)
    assert listed.exit_code == 0, listed.output
    assert "selected: adj-a3 planned refund_without_credit RMA RMA-3" in listed.output
    assert "90.00 EUR" in listed.output
    assert "adj-a1" not in listed.output  # 120.00 EUR is above the limit
    assert "adj-a4" not in listed.output  # already approved: a filter selects planned ones
    assert "1 adjustment(s) selected; nothing approved: add --yes" in listed.output
    assert statuses(db)["adj-a3"] == ("planned", None)

    done = cli(
        "approve", "--max-amount", "100", "--currency", "EUR", "--by", "al", "--yes", "--db", db
    )
    assert done.exit_code == 0, done.output
    assert "adj-a3 approved by al" in done.output
    assert statuses(db)["adj-a3"] == ("approved", "al")
    repeat = cli(
        "approve", "--max-amount", "100", "--currency", "EUR", "--by", "al", "--yes", "--db", db
    )
    assert repeat.exit_code == 0 and "no adjustment matches" in repeat.output

    assert cli("approve", "--max-amount", "100", "--by", "al", "--db", db).exit_code == EXIT_USAGE
    assert (
        cli("approve", "--by", "al", "--db", db).exit_code == EXIT_USAGE
    )  # neither ids nor filter
    both = cli("approve", "adj-a1", "--rule", "receipt_not_posted", "--by", "al", "--db", db)
    assert both.exit_code == EXIT_USAGE
    assert cli("approve", "adj-a1", "--by", "auto", "--db", db).exit_code == EXIT_USAGE


def test_reject_by_rule_and_again(db):
    rule = "refund_without_credit"
    listed = cli("reject", "--rule", rule, "--by", "bob", "--db", db)
    assert listed.exit_code == 0, listed.output
    chosen = {line.split()[1] for line in listed.output.splitlines() if line.startswith("selected")}
    assert chosen == {"adj-a2", "adj-a3", "adj-a4", "adj-a7"}  # planned, approved, exception
    done = cli("reject", "--rule", rule, "--by", "bob", "--reason", "by hand", "--yes", "--db", db)
    assert done.exit_code == 0, done.output
    after = statuses(db)
    assert {a for a, (s, _) in after.items() if s == "rejected"} == chosen | {"adj-a6"}
    assert after["adj-a1"] == ("planned", None)
    again = cli("reject", "adj-a2", "--by", "bob", "--db", db)
    assert again.exit_code == 0 and "adj-a2 already rejected by bob" in again.output
    sent = cli("reject", "adj-a5", "--by", "bob", "--db", db)
    assert sent.exit_code == EXIT_FAILED and "adj-a5 is sent" in sent.output


def test_a_missing_warehouse_is_a_configuration_error(tmp_path):
    for command in ("adjustments", "exceptions", "dead-letters", "quarantine"):
        result = cli(command, "--db", tmp_path / "none.duckdb")
        assert result.exit_code == EXIT_USAGE, (command, result.output)
        assert "no warehouse at" in result.output
