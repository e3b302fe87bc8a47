"""The run summary: what landed, what was rejected, what the marts and reconciliation hold, and
which sources are stale (DESIGN §12: reconciled without them, nothing planned)."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.lib import source_status
from pipelines.lib.warehouse import connection, table_exists
from pipelines.settings import Settings


def collect(settings: Settings) -> dict:
    """Read-only counts: raw rows, dead letters, quarantine, model rows, open mismatches."""
    out: dict = {"raw": {}, "models": {}, "mismatches": {}, "stale": []}
    if not settings.db_path.exists():
        return out
    with connection(settings.db_path, read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'staging', 'intermediate', 'marts', 'recon') "
            "and not starts_with(table_name, '_') "  # bookkeeping, e.g. _incremental_state
            "order by 1, 2"
        ).fetchall()
        for schema, name in tables:
            count = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
            out["raw" if schema == "raw" else "models"][f"{schema}.{name}"] = count
        out["dead_letters"] = con.execute("select count(*) from meta.dead_letters").fetchone()[0]
        out["quarantined"] = con.execute("select count(*) from meta.quarantine").fetchone()[0]
        out["files_landed"] = con.execute("select count(*) from meta.files_landed").fetchone()[0]
        out["stale"] = source_status.stale_sources(con)
        if table_exists(con, "meta", "reference_versions"):  # reference files (DESIGN §12)
            from pipelines.lib.files.reference import reference_warnings

            out["reference_warnings"] = reference_warnings(con)
        if table_exists(con, "writeback", "adjustments"):
            out["adjustments"] = dict(
                con.execute(
                    "select status, count(*) from writeback.adjustments group by 1 order by 1"
                ).fetchall()
            )
        if table_exists(con, "recon", "mismatches"):
            out["mismatches"] = dict(
                con.execute(
                    "select rule, count(*) from recon.mismatches where status = 'open' "
                    "group by rule order by rule"
                ).fetchall()
            )
    return out


def print_summary(settings: Settings, echo: Callable[[str], None] = print) -> dict:
    data = collect(settings)
    echo("")
    echo(f"== returnsync summary ({settings.db_path})")
    echo(
        f"files landed: {data.get('files_landed', 0)}   dead letters: "
        f"{data.get('dead_letters', 0)}   quarantined files: {data.get('quarantined', 0)}"
    )
    for warning in data.get("reference_warnings", []):
        echo(f"WARNING {warning} (check reference_mapping_drop)")
    raw_total = sum(data["raw"].values())
    echo(f"raw rows: {raw_total} in {sum(1 for v in data['raw'].values() if v)} non-empty tables")
    layers: dict[str, int] = {}
    for name in data["models"]:
        layers[name.split(".")[0]] = layers.get(name.split(".")[0], 0) + 1
    if layers:
        echo("models built: " + ", ".join(f"{n} {layer}" for layer, n in layers.items()))
    for name, count in data["models"].items():
        if name.startswith("marts."):
            echo(f"  {name:<40} {count:>10} rows")
    if data["mismatches"]:
        echo("open mismatches by rule:")
        for rule, count in data["mismatches"].items():
            echo(f"  {rule:<32} {count:>6}")
    elif "recon.mismatches" in data["models"]:
        echo("open mismatches: none")
    if data.get("adjustments"):
        counts = ", ".join(f"{n} {status}" for status, n in data["adjustments"].items())
        echo(f"ERP adjustments: {counts} (returnsync push --dry-run shows what would be sent)")
    if data["stale"]:
        echo("STALE sources (reconciled without them; nothing planned or auto-approved):")
        for stale in data["stale"]:
            echo(f"  {stale.source:<24} {stale.error or ''}")
    return data
