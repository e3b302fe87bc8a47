"""The run summary: first what changed in this run (files and rows new, mismatches opened and
resolved, money and goods at risk per currency), then what landed, what was rejected, what the
marts and reconciliation hold, the money at risk per currency (never summed across currencies,
DESIGN §11), and which sources are stale (DESIGN §12: reconciled without them, nothing planned)."""

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


def snapshot(settings: Settings) -> dict:
    """What the warehouse holds before a run, to say afterwards what the run changed: files
    landed, raw rows, the open (or acknowledged) mismatch ids, money and goods at risk per
    currency. Empty for a warehouse that does not exist yet."""
    out: dict = {"files_landed": 0, "raw_rows": 0, "open_ids": set(), "totals": {}}
    if not settings.db_path.exists():
        return out
    with connection(settings.db_path, read_only=True) as con:
        _fill_snapshot(con, out)
    return out


def _fill_snapshot(con, out: dict) -> None:
    if table_exists(con, "meta", "files_landed"):
        out["files_landed"] = con.execute("select count(*) from meta.files_landed").fetchone()[0]
    tables = con.execute(
        "select table_name from information_schema.tables where table_schema = 'raw'"
    ).fetchall()
    out["raw_rows"] = sum(
        con.execute(f'select count(*) from raw."{name}"').fetchone()[0] for (name,) in tables
    )
    if table_exists(con, "recon", "mismatches"):
        out["open_ids"] = {
            mismatch_id
            for (mismatch_id,) in con.execute(
                "select mismatch_id from recon.mismatches where status in ('open', 'acknowledged')"
            ).fetchall()
        }
        out["totals"], out["company"], out["totals_from"] = open_totals(con)


def open_totals(con, use_cache: bool = True) -> tuple[dict, dict | None, str]:
    """The open report's totals per currency and in the company currency, as
    `build_report(con, status="open")` has them, and where they came from: `cache` when the
    report cache (`report_cache.open_mismatches`, refreshed by the report assets of every run)
    is current, i.e. a refresh would recompute and drop nothing (read in SQL, no row computed
    in Python: a run's summary needs them twice, and the report grows with history), else
    `computed` (every open row, as the report does; e.g. after an `acknowledge`, which changes
    the open rows without refreshing the cache)."""
    from pipelines.lib.recon.report import cache_is_current, cached_totals

    if use_cache and cache_is_current(con):
        by_currency, company = cached_totals(con)
        return by_currency, company, "cache"
    from pipelines.lib.recon.report import build_report

    report = build_report(con, status="open")
    return report.totals_by_currency, report.totals_company, "computed"


def _amounts(totals: dict, key: str) -> str:
    shown = [f"{t[key]} {c}" for c, t in totals.items() if t[key]]
    return ", ".join(shown) if shown else "none"


def _changes(before: dict, after: dict, key: str) -> str:
    shown = []
    for currency in sorted(set(before) | set(after)):
        old = before.get(currency, {}).get(key, 0)
        new = after.get(currency, {}).get(key, 0)
        if new != old:
            shown.append(f"{new - old:+} {currency}")
    return ", ".join(shown) if shown else "no change"


def print_changes(settings: Settings, before: dict, echo: Callable[[str], None] = print) -> dict:
    """What this run changed, from `snapshot` taken before it and one taken now."""
    after = snapshot(settings)
    opened = after["open_ids"] - before["open_ids"]
    resolved = before["open_ids"] - after["open_ids"]
    echo("")
    echo("== this run")
    echo(
        f"new: {after['files_landed'] - before['files_landed']} file(s), "
        f"{after['raw_rows'] - before['raw_rows']} raw row(s)"
    )
    echo(f"mismatches: {len(opened)} opened, {len(resolved)} resolved")
    echo(f"money at risk: {_changes(before['totals'], after['totals'], 'money_at_risk')}")
    echo(f"goods at risk: {_changes(before['totals'], after['totals'], 'goods_at_risk')}")
    return {"opened": len(opened), "resolved": len(resolved), "after": after}


def print_summary(
    settings: Settings, echo: Callable[[str], None] = print, before: dict | None = None
) -> dict:
    """Print the summary; with `before` (a `snapshot` taken before the run), first what the run
    changed."""
    changes = print_changes(settings, before, echo) if before is not None else None
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
    now = changes["after"] if changes is not None else snapshot(settings)
    if now["totals"]:
        echo(f"money at risk (open, per currency): {_amounts(now['totals'], 'money_at_risk')}")
        echo(f"goods at risk (open, per currency): {_amounts(now['totals'], 'goods_at_risk')}")
        company = now.get("company")
        if company is not None:
            missing = sorted({c for v in company["not_converted"].values() for c in v})
            note = f" (no rate for {', '.join(missing)}: not included)" if missing else ""
            echo(
                f"in {company['currency']} (company currency): money at risk "
                f"{company['money_at_risk']}, goods at risk {company['goods_at_risk']}{note}"
            )
    data["changes"] = changes
    if data.get("adjustments"):
        counts = ", ".join(f"{n} {status}" for status, n in data["adjustments"].items())
        echo(f"ERP adjustments: {counts} (returnsync push --dry-run shows what would be sent)")
    if data["stale"]:
        echo("STALE sources (reconciled without them; nothing planned or auto-approved):")
        for stale in data["stale"]:
            echo(f"  {stale.source:<24} {stale.error or ''}")
    return data
