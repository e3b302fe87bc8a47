"""Reconciliation benchmark: returnsync's reconciliation SQL against datacompy (polars backend).

DESIGN §10, issue 10 (`bench/recon`). Two tables of the same shape as the credit rules' inputs,
keyed by `rma_number` (default 1,000,000 rows each, generated deterministically in DuckDB):
`channel_refunds(rma_number, currency, amount decimal(18,2))` and `erp_credits(...)`, with
returns on one side only, amount differences above the tolerance, near misses AT the tolerance
(not mismatches) and currency differences.

The comparison logic is the rules' (dbt `recon_credit_mismatches`): a key is a mismatch when it
is on one side only, or the currencies differ, or |ERP credit - channel refund| > amount_tolerance
(read from the settings seed: 0.01). datacompy compares numbers as floats, so Decimal amounts AT
the tolerance flip either way by float rounding; it gets the amounts as integer cents with
`abs_tol` = the tolerance in cents and `rel_tol=0`, which is exactly the same test. Both tools
must find the same mismatching keys.

1. full: our SQL writes the mismatch table from the two whole tables, against
   `datacompy.PolarsCompare` + `all_mismatch()` + the unique rows of each side (the keys it
   reports), and DuckDB's bare full outer join (count only) for context;
   and the same SQL joined on a stored 64-bit hash of the key (exact: a collision is detected
   and falls back to the string join);
2. incremental: 10,000 ERP credits change; our SQL re-reconciles only those keys (delete their
   mismatches, insert the new ones, one transaction), against datacompy's full compare of the
   changed tables (what its users run every day). The arrival (not timed) gives the changed
   keys and the changed credits' rows, as a landed CDC batch does. The state kept between
   runs is the mismatch table and, in each table, `key_md5`: the key's md5 as a 128-bit
   number (DuckDB's `md5_number`), computed once when a row is stored, as production stores
   `return_key = md5('return|' || rma)` with every row. The refunds of the changed keys are
   found by it (the changed keys arrive with theirs, like every stored row; computing it in
   the timed part cost ~1.4 CPU-ms on one thread, before the probe can start): a 16-byte
   integer probe of the 1M rows that reads no string of that side. Measured beside it: a 64-bit
   `hash()` probe checked on the key string (exact without md5, but it decodes the other
   side's key strings), and the plain string semi join on both whole tables. Every way must
   give exactly the rows of a full reconciliation of the changed tables.

datacompy 1.1.0 pins polars<1.45 and pandas<3.1, which conflict with the project's lock, so it
runs in its own environment (`.cache/bench/datacompy-venv`, created on first use from
bench/requirements-datacompy.txt with uv), in a child process, on Parquet exports of the same
tables; loading them is timed apart and not counted. Goals: full >= 4x, incremental >= 50x.

    .venv/bin/python bench/recon.py                    # 1,000,000 rows, 3 repeats
    .venv/bin/python bench/recon.py --rows 20000 --repeats 1 --no-append
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    CACHE_DIR,
    PROJECT_ROOT,
    emit,
    fmt_spread,
    log,
    result_line,
    run_child,
    spread,
    timed,
)

NAME = "recon_vs_datacompy"
DATACOMPY_VENV = CACHE_DIR / "datacompy-venv"
DATACOMPY_REQUIREMENTS = PROJECT_ROOT / "bench" / "requirements-datacompy.txt"
SETTINGS_SEED = PROJECT_ROOT / "dbt_project" / "seeds" / "recon_settings.csv"
CHANGED_KEYS = 10_000


def amount_tolerance() -> Decimal:
    with open(SETTINGS_SEED, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["setting"] == "amount_tolerance":
                return Decimal(row["value"])
    raise SystemExit(f"amount_tolerance missing from {SETTINGS_SEED}")


# --- the data ----------------------------------------------------------------------------------


def generate(con, rows: int) -> None:
    """channel_refunds: keys [0, rows); erp_credits: keys [rows/500, rows + rows/500).

    Deterministic (hash of the key). On the shared keys the ERP credit equals the refund except:
    i % 97 == 0 -> +0.05 (mismatch), i % 89 == 0 -> +0.01 (near miss: AT the tolerance, no
    mismatch), i % 101 == 0 -> -12.34 (mismatch), i % 211 == 0 -> USD instead of EUR (mismatch).
    """
    shift = max(1, rows // 500)
    con.execute(
        f"""
        create or replace table channel_refunds as
        select 'RMA-' || lpad(i::varchar, 9, '0') as rma_number,
               'EUR' as currency,
               (1 + hash(i) % 200000 / 100)::decimal(18, 2) as amount,
               hash(rma_number) as key_hash,
               md5_number(rma_number) as key_md5
        from range({rows}) t(i)
        """
    )
    con.execute(
        f"""
        create or replace table erp_credits as
        select 'RMA-' || lpad(i::varchar, 9, '0') as rma_number,
               case when i % 211 = 0 then 'USD' else 'EUR' end as currency,
               ((1 + hash(i) % 200000 / 100)::decimal(18, 2)
                 + case when i >= {rows} then 0.00
                        when i % 97 = 0 then 0.05
                        when i % 89 = 0 then 0.01
                        when i % 101 = 0 then -12.34
                        else 0.00 end)::decimal(18, 2) as amount,
               hash(rma_number) as key_hash,
               md5_number(rma_number) as key_md5
        from range({shift}, {rows + shift}) t(i)
        """
    )


def change(con, rows: int, n: int = CHANGED_KEYS) -> list[str]:
    """n ERP credits change (every rows/n-th shared key): half gain 0.50, half are set to the
    refund (fixing any mismatch). The arrival, not timed: the changed keys go to
    `changed_keys` (with their `key_md5`, computed when a row is stored, as for every other
    row) and the changed credits' current rows to `changed_credits`, as landing a CDC batch
    gives them. Returns the keys."""
    step = max(1, rows // n)
    con.execute(
        f"""
        create or replace table changed_keys as
        select rma_number, j, md5_number(rma_number) as key_md5
        from (select 'RMA-' || lpad((j * {step} + 3)::varchar, 9, '0') as rma_number, j
              from range({n}) t(j) where j * {step} + 3 < {rows})
        """
    )
    con.execute(
        """
        update erp_credits e
        set amount = case when k.j % 2 = 0 then e.amount + 0.50 else r.amount end,
            currency = case when k.j % 2 = 0 then e.currency else r.currency end
        from changed_keys k, channel_refunds r
        where e.rma_number = k.rma_number and r.rma_number = k.rma_number
        """
    )
    con.execute(
        "create or replace table changed_credits as "
        "select * from erp_credits semi join changed_keys using (rma_number)"
    )
    return [r[0] for r in con.execute("select rma_number from changed_keys").fetchall()]


# --- returnsync's reconciliation SQL -----------------------------------------------------------

MISMATCH_SELECT = """
select
    coalesce(c.rma_number, e.rma_number) as rma_number,
    case
        when e.rma_number is null then 'refund_without_credit'
        when c.rma_number is null then 'credit_without_refund'
        when c.currency <> e.currency then 'currency_mismatch'
        else 'credit_amount_mismatch'
    end as rule,
    c.amount as expected,
    e.amount as actual,
    e.amount - c.amount as amount_delta
from {refunds} as c
full outer join {credits} as e on c.{key} = e.{key}
where c.rma_number is null
   or e.rma_number is null
   or c.currency <> e.currency
   or abs(e.amount - c.amount) > {tolerance}
"""


def full_recon(con, tolerance: Decimal) -> None:
    """Every key: the mismatch table rebuilt from the two whole tables."""
    sql = MISMATCH_SELECT.format(
        refunds="channel_refunds", credits="erp_credits", tolerance=tolerance, key="rma_number"
    )
    con.execute(f"create or replace table mismatches as {sql}")


# The other side's rows of the changed keys, found by the stored 128-bit key `key_md5` (the
# md5 of the key as a number, DuckDB's md5_number: production identifies a return the same way,
# return_key = md5('return|' || rma), so this is the identity the rules already join on). An
# integer probe (DuckDB pushes the join's filter into the scan of the 1M rows) that reads only
# fixed-width columns of the other side: the key string comes from the changed keys, so the
# 1M-row string key column is never read (decoding it for the probed rows was half the time).
REFUNDS_OF_CHANGED = """(
    select k.rma_number, c.currency, c.amount
    from channel_refunds as c
    join changed_keys as k on c.key_md5 = k.key_md5
)"""

# The previous way, for comparison: a 64-bit hash() probe checked on the key string itself
# (exact without relying on md5). MATERIALIZED keeps the string check out of the scan: without
# it, DuckDB pushed the string join's filter into the scan and decoded all 1M key strings.
REFUNDS_OF_CHANGED_CHECKED = """(
    with by_hash as materialized (
        select c.* from channel_refunds as c
        semi join (select hash(rma_number) as key_hash from changed_keys) as k
            on c.key_hash = k.key_hash
    )
    select * from by_hash semi join changed_keys using (rma_number)
)"""


COLLISION = "c.rma_number <> e.rma_number"  # two keys paired by their hash


def full_recon_hash_join(con, tolerance: Decimal) -> None:
    """The same full reconciliation joined on the stored 64-bit key hash (an integer join);
    a hash collision would pair two different keys, so such pairs are flagged and, if there is
    any, the string join is run instead: the result is always exact."""
    sql = (
        MISMATCH_SELECT.format(
            refunds="channel_refunds", credits="erp_credits", tolerance=tolerance, key="key_hash"
        )
        .replace("    case\n", f"    case\n        when {COLLISION} then 'key_collision'\n")
        .replace("where c.rma_number is null", f"where {COLLISION}\n   or c.rma_number is null")
    )
    con.execute(f"create or replace table mismatches_by_hash as {sql}")
    collisions = con.execute(
        "select count(*) from mismatches_by_hash where rule = 'key_collision'"
    ).fetchone()[0]
    if collisions:
        full_recon(con, tolerance)
        con.execute("create or replace table mismatches_by_hash as select * from mismatches")


def merge_changed(con, refunds: str, credits: str, tolerance: Decimal) -> None:
    """Delete the changed keys' mismatches and insert their new ones, in one transaction."""
    sql = MISMATCH_SELECT.format(
        refunds=refunds, credits=credits, tolerance=tolerance, key="rma_number"
    )
    con.execute("begin transaction")
    try:
        con.execute(
            "delete from mismatches where rma_number in (select rma_number from changed_keys)"
        )
        con.execute(f"insert into mismatches by name {sql}")
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def incremental_recon(con, tolerance: Decimal) -> None:
    """Only the changed keys: their mismatches deleted and recomputed, in one transaction, from
    the changed credits (the arrival's rows) and the refunds of those keys, by the 128-bit key."""
    merge_changed(con, REFUNDS_OF_CHANGED, "changed_credits", tolerance)


def incremental_recon_checked(con, tolerance: Decimal) -> None:
    """The same through a 64-bit hash() probe checked on the key string (reads the strings)."""
    merge_changed(con, REFUNDS_OF_CHANGED_CHECKED, "changed_credits", tolerance)


def incremental_recon_plain(con, tolerance: Decimal) -> None:
    """The same, looking both sides up by a plain string semi join on the changed keys."""
    merge_changed(
        con,
        "(select * from channel_refunds semi join changed_keys using (rma_number))",
        "(select * from erp_credits semi join changed_keys using (rma_number))",
        tolerance,
    )


def bare_full_join(con) -> None:
    con.execute(
        "select count(*) from channel_refunds c full outer join erp_credits e "
        "on c.rma_number = e.rma_number"
    ).fetchone()


def mismatch_keys(con, table: str = "mismatches") -> set[str]:
    return {r[0] for r in con.execute(f"select rma_number from {table}").fetchall()}


def mismatch_rows(con, table: str = "mismatches") -> set[tuple]:
    """Every column of every mismatch (an incremental result must equal a full one exactly)."""
    sql = f"select rma_number, rule, expected, actual, amount_delta from {table}"
    rows = con.execute(sql).fetchall()
    if len(rows) != len(set(rows)):
        raise SystemExit(f"duplicate mismatches in {table}")
    return set(rows)


# --- datacompy, in its own environment ---------------------------------------------------------

DATACOMPY_CODE = r"""
import json, sys, time
import polars as pl, datacompy
left, right, out = sys.argv[1:4]
tol, repeats = float(sys.argv[4]), int(sys.argv[5])
t = time.perf_counter()
df1 = pl.read_parquet(left)
df2 = pl.read_parquet(right)
load_s = time.perf_counter() - t
times, cpus = [], []
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    cmp = datacompy.PolarsCompare(df1, df2, join_columns=["rma_number"], abs_tol=tol, rel_tol=0)
    keys = set(cmp.all_mismatch()["rma_number"].to_list())
    keys |= set(cmp.df1_unq_rows["rma_number"].to_list())
    keys |= set(cmp.df2_unq_rows["rma_number"].to_list())
    times.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
with open(out, "w") as fh:
    fh.write("\n".join(sorted(keys)))
print(json.dumps({"load_s": load_s, "compare_s": times, "compare_cpu_s": cpus,
                  "mismatches": len(keys)}))
"""


def datacompy_python() -> Path:
    """The datacompy environment's Python, created with uv on first use."""
    python = DATACOMPY_VENV / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).with_name("uv")
        log(f"creating {DATACOMPY_VENV} ({DATACOMPY_REQUIREMENTS.name})")
        subprocess.run([str(uv), "venv", "-q", "--python", "3.11", str(DATACOMPY_VENV)], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", str(python), "-r",
             str(DATACOMPY_REQUIREMENTS)],
            check=True,
        )  # fmt: skip
    return python


def datacompy_versions(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-c",
         "import json, datacompy, polars; "
         "print(json.dumps({'datacompy': datacompy.__version__, 'polars': polars.__version__}))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def run_datacompy(
    python: Path, left: Path, right: Path, tolerance: Decimal, repeats: int, work: Path
) -> tuple[dict, set[str]]:
    keys_file = work / f"datacompy-{left.stem}.keys"
    run = run_child(
        [
            str(python),
            "-c",
            DATACOMPY_CODE,
            str(left),
            str(right),
            str(keys_file),
            str(int(tolerance * 100)),
            str(repeats),
        ]
    )
    info = json.loads(run.stdout.strip().splitlines()[-1])
    info["peak_rss_mb"] = round(run.peak_rss_mb)
    text = keys_file.read_text()
    return info, set(text.split("\n")) if text else set()


def export(con, work: Path, tag: str) -> tuple[Path, Path]:
    left, right = work / f"refunds-{tag}.parquet", work / f"credits-{tag}.parquet"
    for table, path in (("channel_refunds", left), ("erp_credits", right)):
        con.execute(
            f"copy (select rma_number, currency, (amount * 100)::bigint as amount_cents "
            f"from {table}) to '{path}' (format parquet)"
        )
    return left, right


# --- the benchmark -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows per table (default 1,000,000)"
    )
    parser.add_argument("--returns", type=int, help="alias of --rows (for the smoke test)")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs (default 3)")
    parser.add_argument("--no-append", action="store_true", help="no RESULTS.md row")
    args = parser.parse_args(argv)
    rows = args.returns or args.rows
    repeats = max(1, args.repeats)
    tolerance = amount_tolerance()

    import duckdb

    python = datacompy_python()
    with tempfile.TemporaryDirectory(prefix="returnsync-bench-recon-") as tmp:
        work = Path(tmp)
        con = duckdb.connect(str(work / "recon.duckdb"))
        log(f"generating two tables of {rows:,} rows")
        generate(con, rows)
        con.execute("checkpoint")
        v1 = export(con, work, "v1")

        # the tools take turns in every repeat, so both see the same load on the shared machine
        full_s, bare_s, dc_full_s, hash_s = [], [], [], []
        dc_v1: dict = {}
        for r in range(repeats):
            full_s.append(timed(lambda: full_recon(con, tolerance))[0])
            bare_s.append(timed(lambda: bare_full_join(con))[0])
            ours_v1 = mismatch_keys(con)
            hash_s.append(timed(lambda: full_recon_hash_join(con, tolerance))[0])
            if mismatch_keys(con, "mismatches_by_hash") != ours_v1:
                raise SystemExit("the hash join finds other keys than the string join")
            log(f"full {r + 1}/{repeats}: ours {len(ours_v1):,} mismatching keys; datacompy")
            dc_v1, dc_keys_v1 = run_datacompy(python, *v1, tolerance, 1, work)
            dc_full_s += dc_v1["compare_s"]
            if ours_v1 != dc_keys_v1:
                raise SystemExit(
                    f"full compare disagrees: ours {len(ours_v1)} keys, datacompy "
                    f"{len(dc_keys_v1)}; only ours {sorted(ours_v1 - dc_keys_v1)[:5]}, "
                    f"only datacompy {sorted(dc_keys_v1 - ours_v1)[:5]}"
                )

        # incremental: each repeat starts from the full v1 reconciliation
        incr_s, incr_cpu_s, plain_s, checked_s, dc_v2_s, dc_v2_cpu_s = [], [], [], [], [], []
        changed: list[str] = []
        v2: tuple[Path, Path] | None = None
        for r in range(repeats):
            if r:
                generate(con, rows)
                full_recon(con, tolerance)
            changed = change(con, rows)
            con.execute("checkpoint")
            # each way starts from the full v1 mismatches (a copy, not timed)
            con.execute("create or replace table mismatches_v1 as select * from mismatches")
            results = []
            for way, seconds in (
                (incremental_recon_plain, plain_s),
                (incremental_recon_checked, checked_s),
                (incremental_recon, incr_s),
            ):
                con.execute("create or replace table mismatches as select * from mismatches_v1")
                con.execute("checkpoint")
                cpu = time.process_time()
                seconds.append(timed(lambda way=way: way(con, tolerance))[0])
                if way is incremental_recon:
                    incr_cpu_s.append(time.process_time() - cpu)
                results.append(mismatch_rows(con))
            if results[0] != results[1] or results[1] != results[2]:
                raise SystemExit("the incremental reconciliations differ")
            ours_v2 = {row[0] for row in results[2]}
            if v2 is None:
                full_recon(con, tolerance)
                if mismatch_rows(con) != results[2]:
                    raise SystemExit("incremental reconciliation differs from a full one")
                v2 = export(con, work, "v2")
            log(f"incremental {r + 1}/{repeats}: {len(changed):,} changed keys; datacompy full")
            dc_v2, dc_keys_v2 = run_datacompy(python, *v2, tolerance, 1, work)
            dc_v2_s += dc_v2["compare_s"]
            dc_v2_cpu_s += dc_v2["compare_cpu_s"]
            if ours_v2 != dc_keys_v2:
                raise SystemExit(
                    f"after the change: ours {len(ours_v2)} keys, datacompy {len(dc_keys_v2)}"
                )
        con.close()

    full, bare, incr = spread(full_s, 4), spread(bare_s, 4), spread(incr_s, 4)
    plain, checked, by_hash = spread(plain_s, 4), spread(checked_s, 4), spread(hash_s, 4)
    incr_cpu, dc_full_v2_cpu = spread(incr_cpu_s, 4), spread(dc_v2_cpu_s, 4)
    incr_cpu_ratio = dc_full_v2_cpu["median"] / incr_cpu["median"]
    dc_full, dc_full_v2 = spread(dc_full_s, 4), spread(dc_v2_s, 4)
    full_ratio = dc_full["median"] / full["median"]
    bare_ratio = dc_full["median"] / bare["median"]
    incr_ratio = dc_full_v2["median"] / incr["median"]
    dc_vers = datacompy_versions(python)
    figures = {
        "rows_per_table": rows,
        "tolerance": str(tolerance),
        "mismatching_keys": len(ours_v1),
        "mismatching_keys_after_change": len(dc_keys_v2),
        "changed_keys": len(changed),
        "same_keys_as_datacompy": True,
        "returnsync_full_s": full,
        "duckdb_bare_full_outer_join_s": bare,
        "datacompy_full_s": dc_full,
        "datacompy_load_parquet_s": round(dc_v1["load_s"], 3),
        "datacompy_peak_rss_mb": dc_v1["peak_rss_mb"],
        "full_ratio": round(full_ratio, 2),
        "returnsync_full_hash_join_s": by_hash,
        "full_hash_join_ratio": round(dc_full["median"] / by_hash["median"], 2),
        "bare_join_ratio": round(bare_ratio, 2),
        "returnsync_incremental_s": incr,
        "returnsync_incremental_cpu_s": incr_cpu,
        "returnsync_incremental_hash64_string_checked_s": checked,
        "incremental_hash64_string_checked_ratio": round(
            dc_full_v2["median"] / checked["median"], 1
        ),
        "returnsync_incremental_plain_semi_join_s": plain,
        "incremental_plain_ratio": round(dc_full_v2["median"] / plain["median"], 1),
        "datacompy_full_after_change_s": dc_full_v2,
        "datacompy_full_after_change_cpu_s": dc_full_v2_cpu,
        "incremental_ratio": round(incr_ratio, 1),
        "incremental_cpu_ratio": round(incr_cpu_ratio, 1),
        "goal_full_4x": full_ratio >= 4,
        "goal_incremental_50x": incr_ratio >= 50,
    }
    line = result_line(
        NAME,
        figures,
        "datacompy PolarsCompare full compare (integer cents, abs_tol = tolerance), "
        "same tables, same run",
        full_ratio,
    )
    line["versions"].update({f"ref {k}": v for k, v in dc_vers.items()})
    summary = (
        f"{rows:,} x {rows:,} rows, {len(ours_v1):,} mismatches (same keys as datacompy): "
        f"full {fmt_spread(full, digits=3)} vs datacompy {fmt_spread(dc_full, digits=3)} "
        f"= {full_ratio:.1f}x (goal 4x; bare full outer join {bare_ratio:.1f}x; joined on "
        f"a stored key hash {by_hash['median']:.3f} s = "
        f"{dc_full['median'] / by_hash['median']:.1f}x); "
        f"{len(changed):,} changed keys by the 128-bit md5 key {fmt_spread(incr, digits=4)} "
        f"vs datacompy full {fmt_spread(dc_full_v2, digits=3)} = {incr_ratio:.0f}x (goal 50x; "
        f"CPU {incr_cpu['median']:.4f} s vs {dc_full_v2_cpu['median']:.3f} s = "
        f"{incr_cpu_ratio:.0f}x; 64-bit hash "
        f"checked on the key string {checked['median']:.4f} s = "
        f"{dc_full_v2['median'] / checked['median']:.0f}x; plain string semi join "
        f"{plain['median']:.4f} s = {dc_full_v2['median'] / plain['median']:.0f}x)"
    )
    emit(line, summary, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
