"""The dbt project as assets: staging, intermediate, marts, recon and seeds.

Keys are the DuckDB location `[schema, name]`, so dbt sources (`raw.*`) meet the landing assets'
keys without per-model overrides; groups are the dbt layer; dbt tests become asset checks.

Each build writes its artifacts to a folder of its own (`pipelines.dbt.run_target_path`), removed
when the build succeeds and kept when it fails (dagster-dbt's error names its `dbt.log`); the
folders of earlier failed or killed builds are pruned first, but for the newest few.

`as_of` reaches dbt through the run context (`pipelines.dbt.write_run_context`), not `--vars`,
so a run never makes dbt re-parse. Under `returnsync watch` a warm dbt is installed
(`pipelines.dbt.install_warm`): the build runs in this process on the project parsed once, with
the same selection and the same Dagster events (dagster-dbt's own conversion of dbt's
structured events), so the run records the same materializations and checks as a cold run.
dbt's unit tests (SQL against fixed fixtures) run in the first warm build after each parse only
(`WarmDbt.unit_tests_due`); data tests run in every build.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

from pipelines.dbt import (
    dbt_project,
    prune_run_targets,
    remove_run_target,
    run_target_path,
    use_settings,
    warm_dbt,
    write_run_context,
)
from pipelines.lib.stages import mark
from pipelines.lib.warehouse import initialize
from pipelines.resources import SettingsResource
from pipelines.settings import parse_as_of


class ReturnsyncTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        schema = dbt_resource_props["config"].get("schema") or dbt_resource_props["schema"]
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "landing"
        return dbt_resource_props["config"].get("schema") or "dbt"


class DbtBuildConfig(dg.Config):
    as_of: str | None = None
    """Reconciliation time (ISO-8601, UTC if no offset); default: when the run starts."""


def resolve_as_of(value: str | None) -> str:
    """Normalise `as_of` to an ISO-8601 UTC timestamp; one value for the whole run.

    Checked as the CLI checks `--as-of` (`settings.parse_as_of`: ISO-8601, at most a day
    ahead), so a run launched from the Dagster UI with a typo fails before dbt reconciles."""
    parsed = parse_as_of(value or None)
    if parsed is None:
        return datetime.now(UTC).replace(microsecond=0).isoformat()
    return parsed.isoformat()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=ReturnsyncTranslator(),
    project=dbt_project,
)
def returnsync_dbt_assets(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    settings: SettingsResource,
    config: DbtBuildConfig,
):
    mark("dbt")
    resolved = settings.get()
    initialize(resolved.db_path)  # raw sources exist even before anything has landed
    use_settings(resolved)
    as_of = resolve_as_of(config.as_of)
    # through the run context, not --vars: a var would make dbt re-parse the project every run
    write_run_context(resolved.db_path, as_of, context.run.run_id)
    context.log.info(f"dbt build with as_of={as_of}")
    prune_run_targets()
    target = run_target_path(context.run.run_id)
    warm = warm_dbt()
    if warm is None:
        yield from dbt.cli(["build"], context=context, target_path=target).stream()
    else:
        yield from _warm_build(context, warm, target)
    remove_run_target(target)  # not reached when the build failed: its dbt.log stays


def _warm_build(context: dg.AssetExecutionContext, warm, target):
    """`dbt build` through the warm dbt, its events turned into Dagster's as dagster-dbt does."""
    translator = ReturnsyncTranslator()
    params = get_updated_cli_invocation_params_for_context(
        context=context,
        manifest=returnsync_dbt_assets_manifest(),
        dagster_dbt_translator=translator,
    )
    if params.dbt_project is not None and params.dbt_project.project_dir != dbt_project.project_dir:
        raise dg.Failure("the warm dbt cannot build a selection this large (a copied project)")
    args = ["build", *params.selection_args]
    if params.indirect_selection:
        args += ["--indirect-selection", params.indirect_selection]
    # unit tests once per parse (their fixtures, not the data, decide them: see WarmDbt)
    unit_tests = warm.unit_tests_due()
    parse = warm.parses
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    context.log.info(
        "dbt unit tests run in this build (first after a parse)"
        if unit_tests
        else f"dbt unit tests passed after parse {parse}: not run again until the next parse"
    )
    started = time.perf_counter()
    ok, events, error = warm.invoke(args, target)
    warm.last_profile = build_profile(events, time.perf_counter() - started)
    warm.last_unit_tests = warm.last_profile.counts.get("unit_test", 0)
    if ok and unit_tests and warm.parses == parse:
        warm.unit_tests_passed(parse)
    for raw in events:
        yield from DbtCoreCliEventMessage(
            raw_event=raw, event_history_metadata={}
        ).to_default_asset_events(
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            context=context,
            target_path=target,
            project=dbt_project,
        )
    if not ok:
        nodes = [
            r["data"]["node_info"]
            for r in events
            if r.get("info", {}).get("level") == "error" and r.get("data", {}).get("node_info")
        ]
        failed = [f"{n.get('unique_id')}: {n.get('node_status')}" for n in nodes]
        raise dg.Failure(
            f"dbt build failed ({', '.join(failed[:5]) or error or 'see the dbt log'}); "
            f"dbt log: {target / 'dbt.log'}"
        )


@dataclass
class BuildProfile:
    """Where one dbt build's time went, from dbt's own node events (one thread: they add up)."""

    wall_s: float
    seconds: dict[str, float] = field(default_factory=dict)  # per resource type
    counts: dict[str, int] = field(default_factory=dict)
    slowest: list[tuple[str, float]] = field(default_factory=list)  # the slowest nodes

    def text(self, shown: int = 3) -> str:
        """`dbt 12.0 s: model 6.1 s (31), test 2.0 s (165), other 3.9 s; slowest a 1.2 s, ...`"""
        parts = [
            f"{kind} {sec:.1f} s ({self.counts[kind]})"
            for kind, sec in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        ]
        other = self.wall_s - sum(self.seconds.values())
        slow = ", ".join(f"{name} {sec:.1f} s" for name, sec in self.slowest[:shown])
        return f"dbt {self.wall_s:.1f} s: {', '.join([*parts, f'other {other:.1f} s'])}" + (
            f"; slowest {slow}" if slow else ""
        )


def build_profile(events: list[dict], wall_s: float) -> BuildProfile:
    """The per-type node seconds of a build's structured events (`NodeFinished`)."""
    profile = BuildProfile(wall_s=wall_s)
    nodes = []
    for event in events:
        if event.get("info", {}).get("name") != "NodeFinished":
            continue
        info = event.get("data", {}).get("node_info", {})
        try:
            seconds = (
                datetime.fromisoformat(info["node_finished_at"])
                - datetime.fromisoformat(info["node_started_at"])
            ).total_seconds()
        except (KeyError, TypeError, ValueError):
            continue
        kind = info.get("resource_type", "other")
        profile.seconds[kind] = profile.seconds.get(kind, 0.0) + seconds
        profile.counts[kind] = profile.counts.get(kind, 0) + 1
        nodes.append((info.get("node_name", "?"), seconds))
    profile.slowest = sorted(nodes, key=lambda n: -n[1])[:10]
    return profile


def returnsync_dbt_assets_manifest() -> dict:
    from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

    manifest, _, _ = get_manifest_and_translator_from_dbt_assets([returnsync_dbt_assets])
    return manifest


defs = dg.Definitions(assets=[returnsync_dbt_assets])
