"""The rule catalog (seeds/rule_catalog.csv): what it must agree with, what it refuses, and how a
renamed or re-keyed rule's mismatches move to their new ids with their history, acknowledgements
and write-back rows."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pytest
import yaml

from pipelines.errors import ConfigError
from pipelines.lib.recon import catalog as rule_catalog
from pipelines.lib.recon.catalog import CATALOG, by_name, load_catalog, rule_models
from pipelines.lib.recon.lifecycle import (
    MISMATCH_ID_SQL,
    acknowledge,
    apply_lifecycle,
    list_mismatches,
    migrate_rule_ids,
)
from pipelines.lib.warehouse import connect
from pipelines.lib.writeback import approve, plan_adjustments
from pipelines.lib.writeback import plan as planner
from pipelines.settings import DBT_PROJECT_DIR
from tests.recon.recon_helpers import dbt_mismatch_id, mismatch, publish
from tests.writeback.helpers import ReturnSpec, add_mismatch, add_return, make_warehouse

RECON = DBT_PROJECT_DIR / "models" / "recon"
T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 2, tzinfo=UTC)
T3 = datetime(2026, 3, 3, tzinfo=UTC)
T4 = datetime(2026, 3, 4, tzinfo=UTC)


def renamed(catalog, **names: str):
    """The catalog with rules renamed (old=new), each new row remembering its former name."""
    return tuple(
        dataclasses.replace(r, rule=names[r.rule], renamed_from=r.rule) if r.rule in names else r
        for r in catalog
    )


def rekeyed(catalog, **shapes: str):
    return tuple(
        dataclasses.replace(r, key_shape=shapes[r.rule]) if r.rule in shapes else r for r in catalog
    )


# -- the catalog agrees with dbt ---------------------------------------------------------------


def test_every_rule_model_raises_its_rules_and_every_recon_model_is_catalogued():
    models = {p.stem: p.read_text() for p in RECON.glob("*.sql")}
    for entry in CATALOG:
        assert entry.model in models, entry
        assert f"'{entry.rule}'" in models[entry.model], (entry.rule, entry.model)
    assert set(models) - set(rule_models()) == {
        "recon_run",
        "recon_mismatches_current",
        "adjustment_candidates",  # the write-back planner's input (DESIGN §6), raises no rule
        "recon_touched",  # the incremental rules' scope (macros/recon_incremental.sql), no rule
    }
    # without returnsync's environment, dbt unions the original rule models: all catalogued
    union = models["recon_mismatches_current"]
    fallback = re.findall(r"'(recon_\w+)'", union.split("%}", 2)[1])
    assert fallback and set(fallback) <= set(rule_models())


def test_the_seed_tests_use_the_catalog_vocabulary():
    spec = yaml.safe_load((DBT_PROJECT_DIR / "seeds" / "_seeds.yml").read_text())
    (seed,) = [s for s in spec["seeds"] if s["name"] == "rule_catalog"]
    accepted = {
        c["name"]: t["accepted_values"]["arguments"]["values"]
        for c in seed["columns"]
        for t in c.get("data_tests", [])
        if isinstance(t, dict) and "accepted_values" in t
    }
    assert accepted == {
        "family": list(rule_catalog.FAMILIES),
        "severity": list(rule_catalog.SEVERITIES),
        "key_shape": list(rule_catalog.KEY_SHAPES),
        "auto_fix_action": list(rule_catalog.AUTO_FIX_ACTIONS),
    }
    assert [c["name"] for c in seed["columns"]] == list(rule_catalog.COLUMNS)


def test_the_lifecycle_id_is_the_one_the_union_unit_test_pins():
    tests = yaml.safe_load((RECON / "_recon__unit_tests.yml").read_text())["unit_tests"]
    (union,) = [t for t in tests if t["model"] == "recon_mismatches_current"]
    shapes = {
        r["rule"]: r["key_shape"]
        for g in union["given"]
        if g["input"] == "ref('rule_catalog')"
        for r in g["rows"]
    }
    flagged = [r for g in union["given"] if g["input"] != "ref('rule_catalog')" for r in g["rows"]]
    expected = {r["rule"]: r["mismatch_id"] for r in union["expect"]["rows"]}
    assert shapes == {r: by_name()[r].key_shape for r in shapes}  # the fixture is the catalog's
    con = duckdb.connect()
    con.execute(
        "create table m (rule varchar, rma_number varchar, sku varchar, warehouse varchar, "
        "location varchar)"
    )
    con.execute("create table c (rule varchar, key_shape varchar)")
    for r in flagged:
        con.execute(
            "insert into m values (?, ?, ?, ?, ?)",
            [r["rule"], r["rma_number"], r["sku"], r["warehouse"], r["location"]],
        )
    con.executemany("insert into c values (?, ?)", list(shapes.items()))
    computed = dict(
        con.execute(f"select m.rule, {MISMATCH_ID_SQL} from m join c using (rule)").fetchall()
    )
    assert computed == expected
    helper = {
        r["rule"]: dbt_mismatch_id(
            r["rule"], shapes[r["rule"]], r["rma_number"], r["sku"], r["warehouse"], r["location"]
        )
        for r in flagged
    }
    assert helper == expected


# -- a malformed catalog ------------------------------------------------------------------------

HEADER = ",".join(rule_catalog.COLUMNS)
GOOD = "a_rule,stock,high,rma,recon_a,,,,Something is off"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([HEADER.replace("family", "kind"), GOOD], "the header must be"),
        ([HEADER, GOOD.replace("stock", "stocks")], "line 2: family 'stocks'"),
        ([HEADER, GOOD.replace("high", "urgent")], "severity 'urgent'"),
        ([HEADER, GOOD.replace(",rma,", ",rma_line,")], "key_shape 'rma_line'"),
        ([HEADER, GOOD.replace(",,,,", ",refund,,,")], "auto_fix_action 'refund'"),
        ([HEADER, GOOD.replace("recon_a", "recon a")], "model 'recon a'"),
        ([HEADER, GOOD.replace("Something is off", "")], "description is empty"),
        ([HEADER, GOOD, GOOD], "rules listed twice: a_rule"),
        ([HEADER, GOOD, GOOD.replace("a_rule", "b_rule").replace(",,,,", ",,a_rule,,")],
         "b_rule is renamed from a_rule, which is still a rule"),
        ([HEADER, GOOD + ",extra"], "9 cells expected"),
        ([HEADER], "no rules"),
    ],
)  # fmt: skip
def test_a_malformed_catalog_is_refused_naming_what_is_wrong(tmp_path, lines, message):
    path = tmp_path / "rule_catalog.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_catalog(path)


def test_the_shipped_catalog_loads_and_drives_the_dbt_environment():
    assert load_catalog() == CATALOG
    env = rule_catalog.dbt_env()
    assert env[rule_catalog.RULE_MODELS_ENV].split(",") == list(rule_models())


# -- renaming a rule ----------------------------------------------------------------------------


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set timezone = 'UTC'")
    yield con
    con.close()


def history(con, mismatch_id):
    return con.execute(
        "select status, changed_at, changed_by from recon.mismatch_history "
        "where mismatch_id = ? order by changed_at, status",
        [mismatch_id],
    ).fetchall()


def test_a_renamed_rule_keeps_its_open_acknowledged_and_resolved_mismatches(con):
    """credit_without_receipt becomes credit_before_receipt: three mismatches (open, acknowledged,
    resolved) move to the new name's ids with their history; another rule's stay as they were."""
    new = renamed(CATALOG, credit_without_receipt="credit_before_receipt")
    old_rows = [mismatch("credit_without_receipt", f"R-{n}", warehouse="WH-E") for n in (1, 2, 3)]
    other = mismatch("refund_without_credit", "R-9", amount_delta=-5)
    publish(con, T1, [*old_rows, other])
    apply_lifecycle(con)
    assert acknowledge(con, old_rows[1]["mismatch_id"], by="ana", at=T1)
    publish(con, T2, [*old_rows[:2], other])  # R-3 resolves
    apply_lifecycle(con)
    before = {r["rma_number"]: r for r in list_mismatches(con, "all")}
    old_history = {rma: history(con, r["mismatch_id"]) for rma, r in before.items()}

    # the next run: dbt raises the same mismatches under the new name
    new_rows = [
        mismatch("credit_before_receipt", f"R-{n}", warehouse="WH-E", catalog=new) for n in (1, 2)
    ]
    publish(con, T3, [*new_rows, other])
    summary = apply_lifecycle(con, catalog=new)

    assert (summary.opened, summary.reopened, summary.resolved, summary.still_open) == (0, 0, 0, 3)
    after = {r["rma_number"]: r for r in list_mismatches(con, "all")}
    assert set(after) == {"R-1", "R-2", "R-3", "R-9"}
    assert not con.execute(
        "select count(*) from recon.mismatches where rule = 'credit_without_receipt'"
    ).fetchone()[0]
    for n, status in ((1, "open"), (2, "acknowledged"), (3, "resolved")):
        rma = f"R-{n}"
        row = after[rma]
        expected_id = mismatch("credit_before_receipt", rma, warehouse="WH-E", catalog=new)
        assert row["mismatch_id"] == expected_id["mismatch_id"] != before[rma]["mismatch_id"]
        assert (row["rule"], row["status"], row["first_seen_at"]) == (
            "credit_before_receipt",
            status,
            T1,
        )
        assert history(con, row["mismatch_id"]) == old_history[rma]  # all of it, nothing new
        assert history(con, before[rma]["mismatch_id"]) == []
    assert (after["R-2"]["acknowledged_by"], after["R-2"]["acknowledged_at"]) == ("ana", T1)
    assert (after["R-3"]["resolved_at"], after["R-3"]["last_seen_at"]) == (T2, T1)
    assert after["R-1"]["last_seen_at"] == T3
    assert after["R-9"] == {**before["R-9"], "last_seen_at": T3}

    # idempotent: nothing moves again, and a later run is an ordinary one
    assert migrate_rule_ids(con, new) == 0
    publish(con, T4, [*new_rows, other])
    later = apply_lifecycle(con, catalog=new)
    assert (later.opened, later.resolved, later.still_open) == (0, 0, 3)


def test_a_coarser_key_shape_merges_mismatches_keeping_the_acknowledgement(con):
    """duplicate_credit keyed by return instead of return line: two lines of one return become one
    mismatch, acknowledged (one of them was), first seen when the first was, with both histories."""
    lines = [mismatch("duplicate_credit", "R-1", sku, warehouse="WH-E") for sku in ("A", "B")]
    publish(con, T1, lines[:1])
    apply_lifecycle(con)
    publish(con, T2, lines)
    apply_lifecycle(con)
    assert acknowledge(con, lines[1]["mismatch_id"], by="ana", at=T2)
    old_history = history(con, lines[0]["mismatch_id"]) + history(con, lines[1]["mismatch_id"])

    coarse = rekeyed(CATALOG, duplicate_credit="rma")
    assert migrate_rule_ids(con, coarse) == 2
    (row,) = list_mismatches(con, "all")
    assert row["mismatch_id"] == dbt_mismatch_id("duplicate_credit", "rma", "R-1")
    assert (row["status"], row["acknowledged_by"], row["first_seen_at"]) == (
        "acknowledged",
        "ana",
        T1,
    )
    assert sorted(history(con, row["mismatch_id"])) == sorted(old_history)
    assert migrate_rule_ids(con, coarse) == 0
    publish(con, T3, [mismatch("duplicate_credit", "R-1", "A", warehouse="WH-E", catalog=coarse)])
    summary = apply_lifecycle(con, catalog=coarse)
    assert (summary.opened, summary.still_open, summary.open_total) == (0, 1, 1)


@pytest.fixture
def planned(tmp_path):
    """Stock mismatches planned (one auto-approved, one approved by a person, one a push tried)
    and a disposition_mismatch in the exception queue."""
    make_warehouse(tmp_path / "w.duckdb")
    con = connect(tmp_path / "w.duckdb")
    add_return(con, ReturnSpec("RMA-1", "P-1", 9001, 9101, 11))
    add_return(con, ReturnSpec("RMA-2", "P-2", 9002, 9102, 11, Decimal(20), Decimal("5.50")))
    add_return(con, ReturnSpec("RMA-3", "P-3", 9003, 9103, 12))
    ids = {
        "auto": add_mismatch(
            con, "receipt_not_posted", "RMA-1", "P-1", location="WH-E-STO", qty_delta="-2"
        ),
        "person": add_mismatch(
            con, "posted_qty_mismatch", "RMA-2", "P-2", location="WH-W-RFB", qty_delta="-12"
        ),
        "tried": add_mismatch(
            con, "receipt_not_posted", "RMA-3", "P-3", location="WH-E-STO", qty_delta="-1"
        ),
        "person_needed": add_mismatch(
            con, "disposition_mismatch", "RMA-1", "P-1", location="WH-E-SCR", qty_delta="1"
        ),
    }
    plan_adjustments(con, now=T1)
    adjustment = dict(
        con.execute("select mismatch_id, adjustment_id from writeback.adjustments").fetchall()
    )
    approve(con, adjustment[ids["person"]], by="ana", at=T2)
    con.execute(
        "insert into writeback.attempts values (?, 1, ?, 'transient_error', 'timeout')",
        [adjustment[ids["tried"]], T2],
    )
    yield con, ids
    con.close()


def _writeback(con):
    cursor = con.execute(
        "select a.*, (select count(*) from writeback.attempts t "
        "where t.adjustment_id = a.adjustment_id) as attempts from writeback.adjustments a"
    )
    names = [d[0] for d in cursor.description]
    rows = (dict(zip(names, row, strict=True)) for row in cursor.fetchall())
    return {r["rma_number"]: r for r in rows}


def _use_catalog(monkeypatch, catalog):
    """The planner as it would be built from `catalog`."""
    actions = {r.rule: r.auto_fix_action for r in catalog if r.auto_fix_action}
    monkeypatch.setattr(planner, "RULE_ACTION", actions)
    reasons = {r.rule: r.exception_reason for r in catalog if r.exception_reason}
    monkeypatch.setattr(planner, "NO_FIX_REASONS", reasons)


def _candidates_follow(con, old: dict[str, str], new: dict[str, str]) -> None:
    """recon.adjustment_candidates as the next dbt build gives it: under the moved ids."""
    for name, old_id in old.items():
        con.execute(
            "update recon.adjustment_candidates set mismatch_id = ?, "
            "rule = (select rule from recon.mismatches where mismatch_id = ?) "
            "where mismatch_id = ?",
            [new[name], new[name], old_id],
        )


def _moved_ids(catalog) -> dict[str, str]:
    shape = {r.rule: r.key_shape for r in catalog}
    rules = {r.renamed_from: r.rule for r in catalog if r.renamed_from}
    natural = {
        "auto": ("receipt_not_posted", "RMA-1", "P-1", "WH-E", "WH-E-STO"),
        "person": ("posted_qty_mismatch", "RMA-2", "P-2", "WH-W", "WH-W-RFB"),
        "tried": ("receipt_not_posted", "RMA-3", "P-3", "WH-E", "WH-E-STO"),
        "person_needed": ("disposition_mismatch", "RMA-1", "P-1", "WH-E", "WH-E-SCR"),
    }
    out = {}
    for name, (rule, *key) in natural.items():
        rule = rules.get(rule, rule)
        out[name] = dbt_mismatch_id(rule, shape[rule], *key)
    return out


def _assert_followed(con, before, after, new_id):
    stored = dict(con.execute("select mismatch_id, rule from recon.mismatches").fetchall())
    assert set(stored) == set(new_id.values())
    for rma, name in (("RMA-1", "auto"), ("RMA-2", "person"), ("RMA-3", "tried")):
        assert (after[rma]["mismatch_id"], after[rma]["rule"]) == (
            new_id[name],
            stored[new_id[name]],
        )
        for column in ("status", "approved_by", "approved_at", "action", "payload", "amount"):
            assert after[rma][column] == before[rma][column], (rma, column)
    for rma, name in (("RMA-1", "auto"), ("RMA-2", "person")):  # never reached the ERP
        adj = after[rma]
        key = planner.idempotency_key(new_id[name], adj["action"], json.loads(adj["payload"]))
        assert (adj["idempotency_key"], adj["adjustment_id"]) == (
            key,
            planner.adjustment_id_for(key),
        )
    assert after["RMA-2"]["approved_by"] == "ana"
    # a push tried this one: the ERP may hold a document with its key, which stays
    assert (
        after["RMA-3"]["idempotency_key"],
        after["RMA-3"]["adjustment_id"],
        after["RMA-3"]["attempts"],
    ) == (before["RMA-3"]["idempotency_key"], before["RMA-3"]["adjustment_id"], 1)
    (exception,) = con.execute(
        "select exception_id, mismatch_id, rule, status from writeback.exceptions"
    ).fetchall()
    assert exception == (
        planner.exception_id_for("mismatch", new_id["person_needed"]),
        new_id["person_needed"],
        stored[new_id["person_needed"]],
        "open",
    )


def test_a_new_key_shape_keeps_adjustments_approvals_and_exceptions(planned, monkeypatch):
    """The stock rules keyed by warehouse instead of ERP location: their adjustments, a person's
    approval and the exception follow the new ids, and planning again finds nothing to do."""
    con, ids = planned
    new = rekeyed(
        CATALOG,
        receipt_not_posted="scanned_rma_sku",
        posted_qty_mismatch="scanned_rma_sku",
        disposition_mismatch="scanned_rma_sku",
    )
    before = _writeback(con)
    assert migrate_rule_ids(con, new) == 4
    after = _writeback(con)
    _assert_followed(con, before, after, _moved_ids(new))
    _candidates_follow(con, ids, _moved_ids(new))

    _use_catalog(monkeypatch, new)
    again = plan_adjustments(con, now=T3)
    assert (again.planned, again.superseded, again.obsolete) == (0, 0, 0)
    assert (again.exceptions_opened, again.exceptions_closed, again.unchanged) == (0, 0, 3)
    assert _writeback(con) == after
    assert migrate_rule_ids(con, new) == 0


def test_renamed_rules_take_their_adjustments_and_exceptions_along(planned, monkeypatch):
    """The three stock rules renamed: mismatches, adjustments and the exception follow. The ERP
    document's description names the rule, so planning again replaces the adjustments no push
    has tried yet (the planner's usual "the mismatch changed"); the tried one stays."""
    con, ids = planned
    new = renamed(
        CATALOG,
        receipt_not_posted="stock_never_posted",
        posted_qty_mismatch="stock_posted_short_or_over",
        disposition_mismatch="stock_posted_elsewhere",
    )
    before = _writeback(con)
    assert migrate_rule_ids(con, new) == 4
    after = _writeback(con)
    _assert_followed(con, before, after, _moved_ids(new))
    _candidates_follow(con, ids, _moved_ids(new))
    renamed_rules = {a["rule"] for a in after.values()}
    assert renamed_rules == {"stock_never_posted", "stock_posted_short_or_over"}

    _use_catalog(monkeypatch, new)
    again = plan_adjustments(con, now=T3)
    assert (again.planned, again.superseded, again.unchanged) == (2, 2, 1)
    assert (again.exceptions_opened, again.exceptions_closed) == (0, 0)
    replaced = con.execute(
        "select adjustment_id, status, decided_reason from writeback.adjustments "
        "where adjustment_id in (?, ?)",
        [after["RMA-1"]["adjustment_id"], after["RMA-2"]["adjustment_id"]],
    ).fetchall()
    assert {status for _, status, _ in replaced} == {"rejected"}
    assert all("the mismatch changed" in reason for _, _, reason in replaced)
    assert migrate_rule_ids(con, new) == 0
