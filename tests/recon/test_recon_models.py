"""Static checks of the recon dbt models: they read only marts, seeds and each other, select no
personal data, and the union's contract has DESIGN §5's columns."""

from __future__ import annotations

import re

import yaml

from pipelines.lib.recon.lifecycle import DETAIL_COLUMNS, RULES
from pipelines.settings import DBT_PROJECT_DIR

RECON = DBT_PROJECT_DIR / "models" / "recon"
MARTS = {p.stem for p in (DBT_PROJECT_DIR / "models" / "marts").glob("*.sql")}
SEEDS = {p.stem for p in (DBT_PROJECT_DIR / "seeds").glob("*.csv")}
PERSONAL = re.compile(
    r"\b(party|party_party|name|first_name|last_name|email|customer|address|phone)\b", re.I
)


def sql_models() -> dict[str, str]:
    """Every recon model, the report's money facts (models/recon/report/) included."""
    return {p.stem: p.read_text() for p in RECON.rglob("*.sql")}


# The write-back planner's input (DESIGN §6) also needs the ERP's own ids (party, draft documents,
# stock moves) from staging; it is never published to analysts (pipelines/lib/publish.py).
PLANNER_INPUT = "adjustment_candidates"
ERP_STAGING = {p.stem for p in (DBT_PROJECT_DIR / "models" / "staging" / "erp").glob("*.sql")}
# The incremental rules' scope (recon_touched) starts from the returns the marts recomputed.
SCOPE_MODEL, MARTS_SCOPE = "recon_touched", {"int_returns_touched"}


def test_recon_models_read_only_marts_seeds_and_recon():
    models = sql_models()
    for name, sql in models.items():
        refs = set(re.findall(r"ref\('([^']+)'\)", sql))
        allowed = MARTS | SEEDS | set(models) | (ERP_STAGING if name == PLANNER_INPUT else set())
        allowed |= MARTS_SCOPE if name == SCOPE_MODEL else set()
        assert refs <= allowed, (name, refs - allowed)
        assert "source(" not in sql, name


def test_recon_models_select_no_personal_data():
    for name, sql in sql_models().items():
        code = "\n".join(line.split("--")[0] for line in sql.splitlines())
        code = code.replace("union all by name", "")
        assert not PERSONAL.search(code), (name, PERSONAL.search(code).group(0))


def test_union_contract_has_the_design_columns_and_checks_rules_against_the_catalog():
    spec = yaml.safe_load((RECON / "_recon.yml").read_text())
    (union,) = [m for m in spec["models"] if m["name"] == "recon_mismatches_current"]
    columns = [c["name"] for c in union["columns"]]
    assert columns == ["mismatch_id", *DETAIL_COLUMNS, "detected_at"]
    (rule_col,) = [c for c in union["columns"] if c["name"] == "rule"]
    (relationship,) = [t["relationships"] for t in rule_col["data_tests"] if "relationships" in t]
    assert relationship["arguments"] == {"to": "ref('rule_catalog')", "field": "rule"}
    # no rule is named in the union: its severity and key shape come from the catalog
    sql = (RECON / "recon_mismatches_current.sql").read_text()
    code = "\n".join(line.split("--")[0] for line in sql.splitlines())
    assert not [rule for rule in RULES if f"'{rule}'" in code]
    assert "ref('rule_catalog')" in code


def test_every_rule_has_a_unit_test():
    tests = yaml.safe_load((RECON / "_recon__unit_tests.yml").read_text())["unit_tests"]
    text = yaml.safe_dump(tests)
    for rule in RULES:
        assert f"rule: {rule}" in text, rule
    assert len(tests) >= 12
