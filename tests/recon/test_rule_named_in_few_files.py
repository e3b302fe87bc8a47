"""Beside the rule catalog's gate (test_rule_catalog_gate.py), a check (issue 20): a rule is named
in at most four production files, its catalog row, the settings seed (its window), its recon
model and its unit tests. Everything else (the lifecycle, the checks, the report, the union of
the recon models, the YAML tests) takes rules from the catalog.

Production files: the product's packages and the dbt project (not the tests, the docs, the
simulator, which injects the rule's faults, or dbt's build output). `stale_return` is the rule
checked (issue 20 counted it in 8 files).
"""

from __future__ import annotations

import re

from pipelines.settings import PROJECT_ROOT

RULE = "stale_return"
ALLOWED = {
    "dbt_project/seeds/rule_catalog.csv",  # its catalog row
    "dbt_project/seeds/recon_settings.csv",  # its window (stale_return_h)
    "dbt_project/models/recon/recon_return_mismatches.sql",  # its model
    "dbt_project/models/recon/_recon__unit_tests.yml",  # its unit tests
}
PRODUCTION = ("pipelines", "assets", "sensors", "expectations", "dbt_project")
NOT_PRODUCTION = {"target", "logs", "dbt_packages", "__pycache__"}
SUFFIXES = {".py", ".sql", ".yml", ".yaml", ".csv", ".md", ".json", ".toml", ".txt", ".jinja"}


def production_files():
    for top in PRODUCTION:
        for path in (PROJECT_ROOT / top).rglob("*"):
            rel = path.relative_to(PROJECT_ROOT)
            if NOT_PRODUCTION & set(rel.parts) or not path.is_file():
                continue
            if path.suffix in SUFFIXES:
                yield rel.as_posix(), path


def test_the_rule_is_named_in_at_most_four_production_files():
    naming = {rel for rel, path in production_files() if re.search(RULE, path.read_text("utf-8"))}
    assert naming, "the scan found nothing: it is looking in the wrong place"
    assert len(naming) <= 4 and naming <= ALLOWED, (
        f"{RULE} is named in {sorted(naming - ALLOWED)} besides its catalog row, settings "
        "window, model and unit tests: read the rule from the catalog (seeds/rule_catalog.csv, "
        "pipelines/lib/recon/catalog.py) instead"
    )
