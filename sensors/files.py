"""`file_drop_sensor`: requests a file-landing run when new files appear in the landing directory.

It only looks: it lists the files under the landing directory, hashes them and asks the file
ledger (`meta.files_landed`, read-only) which are new. It never lands anything itself. The
`run_key` is the new files' hash (one file) or the hash of their sorted hashes (several), so the
same drop never launches two runs. A reference file put back after another version (DESIGN §12:
versions by arrival) carries the number of versions so far in its key, so putting back earlier
content launches a run again instead of repeating the key of the run that first landed it.

A run holding the warehouse makes the sensor skip the tick at once (it never waits for the lock).
"""

import hashlib
import json

import dagster as dg

from assets.files import FILE_ASSET_KEYS
from pipelines.resources import SettingsResource

file_ingest_job = dg.define_asset_job(
    "file_ingest_job",
    selection=dg.AssetSelection.assets(*FILE_ASSET_KEYS),
    description="Land new file drops (returns SaaS, Shopify, Amazon, B2B, reference) into raw.",
)


def drop_run_key(hashes: list[str], reference_versions: int | None = None) -> str:
    """The run key of a drop: the file's sha256, or the sha256 of the sorted hashes; with
    `reference_versions` (a reference file is among them), that count is hashed in too."""
    unique = sorted(set(hashes))
    if len(unique) == 1 and reference_versions is None:
        return unique[0]
    if reference_versions is not None:
        unique.append(f"reference_versions:{reference_versions}")
    return hashlib.sha256("\n".join(unique).encode()).hexdigest()


@dg.sensor(
    job=file_ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests file_ingest_job when files not yet in the file ledger are dropped.",
)
def file_drop_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    import duckdb

    from pipelines.errors import WarehouseLocked
    from pipelines.lib.files import pending_files
    from pipelines.lib.warehouse import connection, scalar, table_exists

    resolved = settings.get()
    # the cursor remembers each file's hash by (size, mtime) so big files are not re-hashed
    try:
        hash_cache = json.loads(context.cursor) if context.cursor else {}
    except ValueError:
        hash_cache = {}
    if not resolved.landing_dir.exists():
        return dg.SkipReason(f"no landing directory at {resolved.landing_dir}")
    versions = 0
    try:
        if resolved.db_path.exists():
            with connection(resolved.db_path, read_only=True, lock_wait_s=0) as con:
                ledger = con if table_exists(con, "meta", "files_landed") else None
                pending = pending_files(resolved.landing_dir, ledger, hash_cache=hash_cache)
                if table_exists(con, "meta", "reference_versions"):
                    versions = scalar(con, "select count(*) from meta.reference_versions")
        else:
            pending = pending_files(resolved.landing_dir, None, hash_cache=hash_cache)
    except (WarehouseLocked, duckdb.IOException) as exc:  # a run holds it: look again next tick
        return dg.SkipReason(f"warehouse busy: {exc}")
    context.update_cursor(json.dumps(hash_cache, sort_keys=True))
    if not pending:
        return dg.SkipReason("no new files")
    hashes = [sha for _, _, sha in pending]
    files = sorted(str(path.relative_to(resolved.landing_dir)) for _, path, _ in pending)
    context.log.info(f"{len(files)} new file(s): {', '.join(files[:20])}")
    with_reference = any(source == "reference" for source, _, _ in pending)
    return dg.RunRequest(
        run_key=drop_run_key(hashes, versions if with_reference else None),
        tags={"returnsync/new_files": str(len(files))},
    )


defs = dg.Definitions(jobs=[file_ingest_job], sensors=[file_drop_sensor])
