"""File drops landed into `raw` (DESIGN §2.4-2.8, §3): one asset per raw file table.

Thin: each asset calls `pipelines.lib.files.land_files` for its table, reports files landed, rows,
dead letters and quarantined files as metadata, and yields the Great Expectations result on the
rows it landed as an asset check (a sample of failing rows shows keys and the failing column only).
"""

import dagster as dg

from pipelines.lib.contracts import FILE_SOURCES, FileSource
from pipelines.lib.stages import mark
from pipelines.resources import SettingsResource

GROUP = "landing"
CHECK_NAME = "landing_expectations"


def file_asset_key(fs: FileSource) -> dg.AssetKey:
    return dg.AssetKey(["raw", fs.raw_table])


def _landing_metadata(summary) -> dict:
    quarantined = [
        {"file": q.path, "moved_to": q.quarantined_path, "reason": q.reason}
        for q in summary.quarantined
    ]
    return {
        "files_landed": summary.files_landed,
        "files_skipped": summary.files_skipped,
        "rows": dg.MetadataValue.int(summary.rows),
        "dead_letters": summary.dead_letters,
        "quarantined_files": summary.quarantined_files,
        "quarantined": dg.MetadataValue.json(quarantined),
    }


def check_result(fs: FileSource, outcome) -> dg.AssetCheckResult:
    """A GE outcome as an asset check result: counts per failed expectation and a safe sample."""
    failed = [
        {
            "frame": r.frame,
            "expectation": r.expectation,
            "column": r.column,
            "unexpected": r.unexpected_count,
            "of": r.element_count,
        }
        for r in outcome.failed
    ]
    metadata: dict = {
        "rows_validated": outcome.rows,
        "expectations": len(outcome.results),
        "failed_expectations": dg.MetadataValue.json(failed),
    }
    if outcome.sample:
        columns = ["frame", "expectation", "column", "value", "_file", "_row_number"]
        header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
        rows = "".join(
            "| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |\n"
            for row in outcome.sample
        )
        metadata["failing_rows_sample"] = dg.MetadataValue.md(header + rows)
    return dg.AssetCheckResult(
        check_name=CHECK_NAME,
        asset_key=file_asset_key(fs),
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def build_file_asset(fs: FileSource) -> dg.AssetsDefinition:
    key = file_asset_key(fs)

    @dg.asset(
        key=key,
        group_name=GROUP,
        description=f"{fs.source} files `{fs.pattern}` landed into raw.{fs.raw_table} "
        "(sha256 ledger, dead letters, quarantine).",
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                description="Great Expectations suite on the rows landed in this run: required "
                "fields, value sets, ranges.",
            )
        ],
        kinds={"duckdb", "python"},
    )
    def _land(context: dg.AssetExecutionContext, settings: SettingsResource):
        from expectations import validate_batch
        from pipelines.lib.files import land_files
        from pipelines.lib.warehouse import connection

        mark("landing")
        resolved = settings.get()
        with connection(resolved.db_path) as con:
            summary = land_files(con, resolved.landing_dir, sources=[fs.raw_table])[fs.raw_table]
            for q in summary.quarantined:
                context.log.warning(f"quarantined {q.path} -> {q.quarantined_path}: {q.reason}")
            outcome = validate_batch(con, fs.raw_table, summary.landed_sha256)
        return dg.MaterializeResult(
            metadata=_landing_metadata(summary), check_results=[check_result(fs, outcome)]
        )

    return _land


file_assets = [build_file_asset(fs) for fs in FILE_SOURCES]
FILE_ASSET_KEYS = [file_asset_key(fs) for fs in FILE_SOURCES]

defs = dg.Definitions(assets=file_assets)
