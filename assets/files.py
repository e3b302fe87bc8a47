"""File drops landed into `raw` (DESIGN §2.4-2.8, §3): one asset per raw file table.

Thin: each asset calls `pipelines.lib.files.land_files` for its table, reports files landed, rows,
dead letters and quarantined files as metadata, and yields the Great Expectations result on the
rows it landed as an asset check (a sample of failing rows shows keys and the failing column only).
A reader that raises marks its source stale instead of failing the run (DESIGN §12).
"""

import dagster as dg

from pipelines.errors import WarehouseLocked
from pipelines.lib import source_status
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
        # not regular files (directories, FIFOs), symbolic links (never followed), unreadable
        "skipped_paths": dg.MetadataValue.json(
            [{"path": p.path, "reason": p.reason} for p in summary.skipped]
        ),
        # CSV/TSV line accounting: lines_read = lines_ignored (headers, blank) + rows + dead
        "lines_read": summary.lines_read,
        "lines_ignored": summary.lines_ignored,
        "duplicate_lines": summary.duplicate_lines,
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


def stale_result(context, fs: FileSource, db_path, exc: Exception) -> dg.MaterializeResult:
    """The source is marked stale (`meta.source_status`) and the step materializes with the
    error, its check failed, so dbt still builds from the other sources (DESIGN §12)."""
    from pipelines.lib.warehouse import connection

    with connection(db_path) as con:
        error = source_status.mark_stale(con, fs.raw_table, exc)
    context.log.warning(f"source {fs.raw_table} is stale: {error}")
    check = dg.AssetCheckResult(
        check_name=CHECK_NAME,
        asset_key=file_asset_key(fs),
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"stale": error},
    )
    return dg.MaterializeResult(metadata={"stale": error}, check_results=[check])


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
        try:
            with connection(resolved.db_path) as con:
                summary = land_files(con, resolved.landing_dir, sources=[fs.raw_table])
                summary = summary[fs.raw_table]
                for q in summary.quarantined:
                    context.log.warning(f"quarantined {q.path} -> {q.quarantined_path}: {q.reason}")
                for p in summary.skipped:
                    context.log.warning(f"skipped {p.path}: {p.reason}")
                outcome = validate_batch(
                    con, fs.raw_table, summary.landed_sha256, since=summary.ingested_at
                )
                source_status.mark_ok(con, fs.raw_table)
        except WarehouseLocked:
            raise
        except Exception as exc:  # a crashing reader makes its source stale, not the run (§12)
            return stale_result(context, fs, resolved.db_path, exc)
        return dg.MaterializeResult(
            metadata=_landing_metadata(summary), check_results=[check_result(fs, outcome)]
        )

    return _land


REFERENCE_CHECK = "reference_mapping_drop"


def build_reference_check(fs: FileSource) -> dg.AssetChecksDefinition:
    """`reference_mapping_drop` (DESIGN §12): fails, severity ERROR, while the current version of
    a reference file dropped more than 10% of the keys of the version it replaced. Its own step,
    reading `meta.reference_versions`, so it reports even when the landing step did not."""

    @dg.asset_check(
        asset=file_asset_key(fs),
        name=REFERENCE_CHECK,
        description="The current version of this reference file keeps at least 90% of the keys "
        "of the version it replaced (a truncated upload is applied, and flagged here).",
    )
    def _check(settings: SettingsResource) -> dg.AssetCheckResult:
        from pipelines.lib.files import DROP_THRESHOLD, current_versions
        from pipelines.lib.warehouse import connection, table_exists

        resolved = settings.get()
        version = None
        if resolved.db_path.exists():
            with connection(resolved.db_path, read_only=True) as con:
                if table_exists(con, "meta", "reference_versions"):
                    version = current_versions(con).get(fs.raw_table)
        metadata: dict = {"threshold": DROP_THRESHOLD}
        if version is not None:
            metadata.update(
                version=version.version,
                path=version.path,
                sha256=version.sha256,
                arrived_at=version.arrived_at.isoformat(),
                keys=dg.MetadataValue.int(version.keys or 0),
                keys_before=dg.MetadataValue.int(version.keys_before or 0),
                keys_dropped=dg.MetadataValue.int(version.keys_dropped or 0),
            )
            if version.mapping_drop:
                metadata["warning"] = version.describe()
        return dg.AssetCheckResult(
            passed=not (version is not None and version.mapping_drop),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
        )

    return _check


file_assets = [build_file_asset(fs) for fs in FILE_SOURCES]
FILE_ASSET_KEYS = [file_asset_key(fs) for fs in FILE_SOURCES]
reference_checks = [build_reference_check(fs) for fs in FILE_SOURCES if fs.source == "reference"]

defs = dg.Definitions(assets=file_assets, asset_checks=reference_checks)
