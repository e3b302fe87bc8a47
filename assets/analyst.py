"""The analysts' read-only copy of the marts, published after every build."""

import dagster as dg

from assets.dbt import returnsync_dbt_assets
from pipelines.lib.publish import publish
from pipelines.lib.stages import mark
from pipelines.resources import SettingsResource

MISMATCHES = dg.AssetKey(["recon", "mismatches"])  # the mismatch lifecycle (assets/recon.py)
# planning (assets/writeback.py): published as recon.writeback_documents, so publishing waits
# for it (without the edge the run could publish first, one planning behind)
ADJUSTMENTS = dg.AssetKey(["writeback", "adjustments"])


@dg.asset(
    key=["analyst", "published"],
    deps=[returnsync_dbt_assets, MISMATCHES, ADJUSTMENTS],
    group_name="analyst",
    description=(
        "Read-only DuckDB file with the marts and reconciliation tables for analysts "
        "(RETURNSYNC_ANALYST_DB), replaced atomically after every build so readers never block "
        "a run and never see a half-written version. Customer free text is published only as "
        "its mapped code (reason_raw stays in the warehouse)."
    ),
)
def analyst_published(
    context: dg.AssetExecutionContext, settings: SettingsResource
) -> dg.MaterializeResult:
    mark("publish")
    resolved = settings.get()
    result = publish(resolved.db_path, resolved.analyst_db_path)
    if result.withheld_columns:
        context.log.warning(
            "columns that look like personal data were not published: "
            + ", ".join(result.withheld_columns)
        )
    if result.removed_leftovers:
        context.log.info(
            "removed the temporary files of an interrupted publish: "
            + ", ".join(result.removed_leftovers)
        )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "tables": len(result.tables),
            "rows": dg.MetadataValue.json(result.tables),
            "withheld_columns": dg.MetadataValue.json(result.withheld_columns),
            "free_text_columns": dg.MetadataValue.json(result.free_text_columns),
            # from the previous published file, only the differing rows written (issue 24)
            "incremental": result.incremental,
            "rows_written": sum(d + i for d, i in result.written.values()),
            "tables_written": dg.MetadataValue.json(
                {k: {"deleted": d, "inserted": i} for k, (d, i) in result.written.items()}
            ),
            # per table: only the build's touched rows compared, or why every row was (issue 24)
            "tables_compared_by_scope": sum(
                1 for how in result.compared.values() if not how.startswith("every row")
            ),
            "compared": dg.MetadataValue.json(result.compared),
        }
    )


defs = dg.Definitions(assets=[analyst_published])
