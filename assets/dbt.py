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
"""

from collections.abc import Mapping
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
    ok, events, error = warm.invoke(args, target)
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


def returnsync_dbt_assets_manifest() -> dict:
    from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

    manifest, _, _ = get_manifest_and_translator_from_dbt_assets([returnsync_dbt_assets])
    return manifest


defs = dg.Definitions(assets=[returnsync_dbt_assets])
