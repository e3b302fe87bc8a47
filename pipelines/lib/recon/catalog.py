"""The rule catalog: `dbt_project/seeds/rule_catalog.csv`, one row per reconciliation rule.

Everything that needs to know the rules reads this one file: dbt (as the `rule_catalog` seed:
the union's severity and id, the relationship test of `recon_mismatches_current.rule`), the
lifecycle (`pipelines.lib.recon.lifecycle`), the Dagster checks (`assets/recon.py`, one per row,
built when the definitions load), the planner (`pipelines.lib.writeback.plan`: the automatic fix
or why a person must act) and the report. A new rule is a row here plus the recon model that
returns its rows (docs/extending.md).

Columns: `rule`, `family` (stock, money, linkage, aging), `severity` (high, medium, low),
`key_shape` (what its `mismatch_id` hashes: rma, rma_sku, scanned_rma_sku), `model` (the dbt
model that raises it), `auto_fix_action` (the ERP-native fix of DESIGN §6, one of the
action vocabulary `pipelines.lib.erp.base.ACTIONS`: `finish_return_shipment`, `internal_move`,
`post_draft_credit_note`, ...; the planner falls back to `create_return_shipment` /
`create_credit_note` when the ERP has no own document left to complete; empty when a person
must act), `renamed_from` (a former name whose mismatches the lifecycle moves
to this rule), `exception_reason` (the exception queue's reason when there is no automatic fix)
and `description` (plain words for finance). The file is read when this module is imported: it
is part of the code, not of the warehouse.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.lib.erp.base import ACTIONS
from pipelines.settings import DBT_PROJECT_DIR

CATALOG_CSV = DBT_PROJECT_DIR / "seeds" / "rule_catalog.csv"
COLUMNS: tuple[str, ...] = (
    "rule",
    "family",
    "severity",
    "key_shape",
    "model",
    "auto_fix_action",
    "renamed_from",
    "exception_reason",
    "description",
)
FAMILIES: tuple[str, ...] = ("stock", "money", "linkage", "aging")
SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
KEY_SHAPES: tuple[str, ...] = ("rma", "rma_sku", "scanned_rma_sku")
AUTO_FIX_ACTIONS: tuple[str, ...] = ACTIONS  # the write-back action vocabulary

# dbt reads the list of rule models from here (recon_mismatches_current.sql): it cannot read a
# seed while it parses, and every ref must be known then.
RULE_MODELS_ENV = "RETURNSYNC_RECON_RULE_MODELS"
_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class Rule:
    """One row of the catalog (empty cells are None)."""

    rule: str
    family: str
    severity: str
    key_shape: str
    model: str
    auto_fix_action: str | None
    renamed_from: str | None
    exception_reason: str | None
    description: str


def _identifier(value: str) -> bool:
    return bool(value) and set(value) <= _NAME and not value[0].isdigit()


def load_catalog(path: Path = CATALOG_CSV) -> tuple[Rule, ...]:
    """The catalog's rows in file order; a malformed catalog raises `ConfigError` naming the
    line and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"rule catalog {path}: {exc.strerror or exc}") from None
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ConfigError(f"rule catalog {path}: the header must be {','.join(COLUMNS)}")
    rules: list[Rule] = []
    for line, raw in enumerate(reader, start=2):
        if None in raw or any(v is None for v in raw.values()):
            raise ConfigError(f"rule catalog {path} line {line}: {len(COLUMNS)} cells expected")
        cells = {k: v.strip() for k, v in raw.items()}
        rule = Rule(**{k: (cells[k] or None) for k in COLUMNS})  # type: ignore[arg-type]
        problems = []
        if not rule.rule or not _identifier(rule.rule):
            problems.append(f"rule {cells['rule']!r} is not a lower-case name")
        if rule.family not in FAMILIES:
            problems.append(f"family {cells['family']!r} is not one of {', '.join(FAMILIES)}")
        if rule.severity not in SEVERITIES:
            problems.append(f"severity {cells['severity']!r} is not one of {', '.join(SEVERITIES)}")
        if rule.key_shape not in KEY_SHAPES:
            problems.append(
                f"key_shape {cells['key_shape']!r} is not one of {', '.join(KEY_SHAPES)}"
            )
        if not rule.model or not _identifier(rule.model):
            problems.append(f"model {cells['model']!r} is not a dbt model name")
        if rule.auto_fix_action is not None and rule.auto_fix_action not in AUTO_FIX_ACTIONS:
            problems.append(
                f"auto_fix_action {cells['auto_fix_action']!r} is not empty or one of "
                f"{', '.join(AUTO_FIX_ACTIONS)}"
            )
        if rule.renamed_from is not None and not _identifier(rule.renamed_from):
            problems.append(f"renamed_from {cells['renamed_from']!r} is not a rule name")
        if not rule.description:
            problems.append("description is empty")
        if problems:
            raise ConfigError(f"rule catalog {path} line {line}: {'; '.join(problems)}")
        rules.append(rule)
    names = [r.rule for r in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"rule catalog {path}: rules listed twice: {', '.join(duplicated)}")
    for r in rules:
        if r.renamed_from is not None and r.renamed_from in names:
            raise ConfigError(
                f"rule catalog {path}: {r.rule} is renamed from {r.renamed_from}, which is still "
                "a rule of the catalog"
            )
    formers = [r.renamed_from for r in rules if r.renamed_from]
    if len(formers) != len(set(formers)):
        raise ConfigError(f"rule catalog {path}: two rules are renamed from the same rule")
    if not rules:
        raise ConfigError(f"rule catalog {path}: no rules")
    return tuple(rules)


CATALOG: tuple[Rule, ...] = load_catalog()


def rules(catalog: tuple[Rule, ...] = CATALOG) -> tuple[str, ...]:
    """The rule names, in catalog order (the order of the report's summary)."""
    return tuple(r.rule for r in catalog)


def severities(catalog: tuple[Rule, ...] = CATALOG) -> dict[str, str]:
    return {r.rule: r.severity for r in catalog}


def by_name(catalog: tuple[Rule, ...] = CATALOG) -> dict[str, Rule]:
    return {r.rule: r for r in catalog}


def rule_models(catalog: tuple[Rule, ...] = CATALOG) -> tuple[str, ...]:
    """The recon models that raise the catalog's rules, each once, in catalog order."""
    return tuple(dict.fromkeys(r.model for r in catalog))


def dbt_env(catalog: tuple[Rule, ...] = CATALOG) -> dict[str, str]:
    """Environment for a dbt command: the rule models `recon_mismatches_current` unions."""
    return {RULE_MODELS_ENV: ",".join(rule_models(catalog))}
