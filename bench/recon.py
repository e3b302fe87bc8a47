"""Reconciliation benchmark: returnsync's reconciliation SQL against datacompy (polars backend).

DESIGN §10, issue 10 (`bench/recon`). Two tables of the same shape as the credit rules' inputs,
keyed by `rma_number` (default 1,000,000 rows each, generated deterministically in DuckDB):
`channel_refunds(rma_number, currency, amount decimal(18,2), key_md5)` and `erp_credits(...)`, with
returns on one side only, amount differences above the tolerance, near misses AT the tolerance
(not mismatches) and currency differences.

The comparison logic is the rules' (dbt `recon_credit_mismatches`): a key is a mismatch when it
is on one side only, or the currencies differ, or |ERP credit - channel refund| > amount_tolerance
(read from the settings seed: 0.01). datacompy compares numbers as floats, so Decimal amounts AT
the tolerance flip either way by float rounding; it gets the amounts as integer cents with
`abs_tol` = the tolerance in cents and `rel_tol=0`, which is exactly the same test. Both tools
must find the same mismatching keys.

1. full: our SQL writes the mismatch table from the two whole tables, joined on `key_md5`, the
   key's md5 as a 128-bit number (DuckDB's `md5_number`), stored with every row as production
   stores `return_key = md5('return|' || rma)`; the key strings are fetched for the mismatches
   only. Against `datacompy.PolarsCompare` + `all_mismatch()` + the unique rows of each side
   (the keys it reports). Measured beside it for context: the same comparison joined on the key
   string (the rules' SQL as written; every repeat checks that both give exactly the same rows)
   and DuckDB's bare full outer join on the key string (count only).
2. incremental: 10,000 ERP credits change; our SQL re-reconciles only those keys (delete their
   mismatches, insert the new ones, one transaction), against datacompy's full compare of the
   changed tables (what its users run every day). The arrival (not timed) gives the changed
   keys, with their `key_md5`, and the changed credits' rows, as a landed CDC batch does. The
   changed keys probe the refunds' 1M rows once by `key_md5`, reading no string of that side.
   Measured beside it: the plain string semi join of both whole tables on the changed keys.
   Every way must give exactly the rows of a full reconciliation of the changed tables.

Every timed compare, ours and datacompy's, follows one untimed run of the same work in the same
process; the first runs are recorded apart.

datacompy 1.1.0 pins polars<1.45 and pandas<3.1, which conflict with the project's lock, so it
runs in its own environment (`.cache/bench/datacompy-venv`, created on first use from
bench/requirements-datacompy.txt with uv), in a child process, on Parquet exports of the same
tables; loading them is timed apart and not counted. Goals: full >= 4x, incremental >= 50x.

    .venv/bin/python bench/recon.py                    # 1,000,000 rows, 5 repeats
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
# Every timed compare, ours and datacompy's, follows an untimed one of the same work in the same
# process (its first-run figure is recorded apart): the first DuckDB query after the datacompy
# child, or after seconds of idling, ran 15-35 ms slower, while datacompy's compare always
# follows its Parquet load, so without it the two were not measured alike.
WARMUPS = 1


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

# The rules' comparison of two sets of rows, joined on {key}: `rma_number` (the key string, the
# rules' SQL as written, what the full compare was until 2026-11-26) or `key_md5` (the stored
# 128-bit key). {extra} adds output columns.
MISMATCH_SELECT = """
select
    coalesce(c.{key}, e.{key}) as {key},{extra}
    case
        when e.{key} is null then 'refund_without_credit'
        when c.{key} is null then 'credit_without_refund'
        when c.currency <> e.currency then 'currency_mismatch'
        else 'credit_amount_mismatch'
    end as rule,
    c.amount as expected,
    e.amount as actual,
    e.amount - c.amount as amount_delta
from {refunds} as c
full outer join {credits} as e on c.{key} = e.{key}
where c.{key} is null
   or e.{key} is null
   or c.currency <> e.currency
   or abs(e.amount - c.amount) > {tolerance}
"""

# The full compare joins on the stored 128-bit key `key_md5` (the md5 of the key as a number,
# DuckDB's md5_number: production identifies a return the same way, return_key =
# md5('return|' || rma), so this is the identity the rules already join on). The join reads no
# key string: decoding the 1M strings of each side cost 18 CPU-ms per side (DuckDB stores them
# FSST-compressed). The strings are fetched only for the mismatches, from the side that has the
# key, by the same integer key: one inner join per side, each given only its own mismatches, so
# the Bloom filter pushed into the ERP side's scan holds the ~2,000 credit-only keys, not all
# ~28,600 (5% faster in an A/B loop than two left joins with the rule in the join condition).
FULL_RECON = """
create or replace table mismatches as
with keyed as materialized ({keyed})
select r.rma_number, m.key_md5, m.rule, m.expected, m.actual, m.amount_delta
from keyed as m
join channel_refunds as r on r.key_md5 = m.key_md5
where m.rule <> 'credit_without_refund'
union all
select x.rma_number, m.key_md5, m.rule, m.expected, m.actual, m.amount_delta
from keyed as m
join erp_credits as x on x.key_md5 = m.key_md5
where m.rule = 'credit_without_refund'
"""


def whole_tables(key: str, tolerance: Decimal) -> str:
    """The comparison of the two whole tables, joined on `key`."""
    return MISMATCH_SELECT.format(
        refunds="channel_refunds", credits="erp_credits", key=key, tolerance=tolerance, extra=""
    )


def full_recon(con, tolerance: Decimal) -> None:
    """Every key: the mismatch table rebuilt from the two whole tables."""
    con.execute(FULL_RECON.format(keyed=whole_tables("key_md5", tolerance)))


def full_recon_by_string(con, tolerance: Decimal) -> None:
    """The same, joined on the key string (into `mismatches_by_string`), for context."""
    sql = whole_tables("rma_number", tolerance)
    con.execute(f"create or replace table mismatches_by_string as {sql}")


# The changed keys' mismatches. The changed keys come with their credits (the arrival's rows,
# joined by key_md5: 10,000 x 10,000) and probe the refunds' 1M rows once, by key_md5: DuckDB
# pushes the join's Bloom filter into that scan, which reads only fixed-width columns (the key
# string comes from the changed keys). A changed key may have lost its credit (no row in
# changed_credits) and may have no refund: it then has no mismatch.
CHANGED_MISMATCHES = """
with changed as (
    select k.rma_number, k.key_md5, e.currency, e.amount, e.key_md5 is not null as has_credit
    from changed_keys as k
    left join changed_credits as e on e.key_md5 = k.key_md5
)
select
    k.rma_number,
    k.key_md5,
    case
        when not k.has_credit then 'refund_without_credit'
        when c.key_md5 is null then 'credit_without_refund'
        when c.currency <> k.currency then 'currency_mismatch'
        else 'credit_amount_mismatch'
    end as rule,
    c.amount as expected,
    k.amount as actual,
    k.amount - c.amount as amount_delta
from channel_refunds as c
right join changed as k on c.key_md5 = k.key_md5
where (c.key_md5 is not null or k.has_credit)
  and (c.key_md5 is null
       or not k.has_credit
       or c.currency <> k.currency
       or abs(k.amount - c.amount) > {tolerance})
"""


def merge_changed(con, delete_sql: str, insert_sql: str) -> None:
    """Delete the changed keys' mismatches and insert their new ones, in one transaction."""
    con.execute("begin transaction")
    try:
        con.execute(delete_sql)
        con.execute(f"insert into mismatches by name {insert_sql}")
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def incremental_recon(con, tolerance: Decimal) -> None:
    """Only the changed keys: their mismatches deleted (by key_md5) and recomputed, in one
    transaction, from the changed credits and the refunds of those keys."""
    merge_changed(
        con,
        "delete from mismatches where key_md5 in (select key_md5 from changed_keys)",
        CHANGED_MISMATCHES.format(tolerance=tolerance),
    )


def incremental_recon_plain(con, tolerance: Decimal) -> None:
    """The same by the key string: a plain semi join of each whole side on the changed keys."""
    merge_changed(
        con,
        "delete from mismatches where rma_number in (select rma_number from changed_keys)",
        MISMATCH_SELECT.format(
            refunds="(select * from channel_refunds semi join changed_keys using (rma_number))",
            credits="(select * from erp_credits semi join changed_keys using (rma_number))",
            key="rma_number",
            tolerance=tolerance,
            extra="\n    coalesce(c.key_md5, e.key_md5) as key_md5,",
        ),
    )


def reopen(con, path: str):
    """Checkpoint, close and open the warehouse again, as a reconciliation run opens the file
    that ingestion wrote. Right after generating the tables in the same process, the keyed
    full compare ran ~12% slower than on the reopened file (108 against 94 ms in an A/B loop;
    the string join 110 against 106 ms)."""
    import duckdb

    con.execute("checkpoint")
    con.close()
    return duckdb.connect(path)


def restore_v1(con) -> None:
    """The mismatches of the full v1 reconciliation, as every incremental way starts from."""
    con.execute("create or replace table mismatches as select * from mismatches_v1")
    con.execute("checkpoint")


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
tol, warmups, repeats = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
t = time.perf_counter()
df1 = pl.read_parquet(left)
df2 = pl.read_parquet(right)
load_s = time.perf_counter() - t
times, cpus = [], []
for _ in range(warmups + repeats):
    t, c = time.perf_counter(), time.process_time()
    cmp = datacompy.PolarsCompare(df1, df2, join_columns=["rma_number"], abs_tol=tol, rel_tol=0)
    keys = set(cmp.all_mismatch()["rma_number"].to_list())
    keys |= set(cmp.df1_unq_rows["rma_number"].to_list())
    keys |= set(cmp.df2_unq_rows["rma_number"].to_list())
    times.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
with open(out, "w") as fh:
    fh.write("\n".join(sorted(keys)))
print(json.dumps({"load_s": load_s, "first_s": times[:warmups], "compare_s": times[warmups:],
                  "compare_cpu_s": cpus[warmups:], "mismatches": len(keys)}))
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
    python: Path, left: Path, right: Path, tolerance: Decimal, work: Path
) -> tuple[dict, set[str]]:
    """WARMUPS untimed compares, then one timed, in a child on the Parquet exports."""
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
            str(WARMUPS),
            "1",
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
    parser.add_argument("--repeats", type=int, default=5, help="measured runs (default 5)")
    parser.add_argument("--no-append", action="store_true", help="no RESULTS.md row")
    args = parser.parse_args(argv)
    rows = args.returns or args.rows
    repeats = max(1, args.repeats)
    tolerance = amount_tolerance()

    import duckdb

    python = datacompy_python()
    with tempfile.TemporaryDirectory(prefix="returnsync-bench-recon-") as tmp:
        work = Path(tmp)
        db = str(work / "recon.duckdb")
        con = duckdb.connect(db)
        log(f"generating two tables of {rows:,} rows")
        generate(con, rows)
        v1 = export(con, work, "v1")
        con = reopen(con, db)

        # the tools take turns in every repeat, so both see the same load on the shared machine
        full_s, full_first_s, bare_s, dc_full_s, dc_first_s, string_s = [], [], [], [], [], []
        dc_v1: dict = {}
        for r in range(repeats):
            for _ in range(WARMUPS):
                full_first_s.append(timed(lambda: full_recon(con, tolerance))[0])
            full_s.append(timed(lambda: full_recon(con, tolerance))[0])
            bare_s.append(timed(lambda: bare_full_join(con))[0])
            ours_v1 = mismatch_keys(con)
            string_s.append(timed(lambda: full_recon_by_string(con, tolerance))[0])
            if mismatch_rows(con, "mismatches_by_string") != mismatch_rows(con):
                raise SystemExit("the string join finds other mismatches than the keyed join")
            log(f"full {r + 1}/{repeats}: ours {len(ours_v1):,} mismatching keys; datacompy")
            dc_v1, dc_keys_v1 = run_datacompy(python, *v1, tolerance, work)
            dc_full_s += dc_v1["compare_s"]
            dc_first_s += dc_v1["first_s"]
            if ours_v1 != dc_keys_v1:
                raise SystemExit(
                    f"full compare disagrees: ours {len(ours_v1)} keys, datacompy "
                    f"{len(dc_keys_v1)}; only ours {sorted(ours_v1 - dc_keys_v1)[:5]}, "
                    f"only datacompy {sorted(dc_keys_v1 - ours_v1)[:5]}"
                )

        # incremental: each repeat starts from the full v1 reconciliation
        incr_s, incr_cpu_s, plain_s, dc_v2_s, dc_v2_cpu_s = [], [], [], [], []
        incr_first_s: list[float] = []
        dc_v2_first_s: list[float] = []
        changed: list[str] = []
        v2: tuple[Path, Path] | None = None
        for r in range(repeats):
            if r:
                generate(con, rows)
                full_recon(con, tolerance)
            changed = change(con, rows)
            # each way starts from the full v1 mismatches (a copy, not timed)
            con.execute("create or replace table mismatches_v1 as select * from mismatches")
            con = reopen(con, db)
            results = []
            for way, seconds in (
                (incremental_recon_plain, plain_s),
                (incremental_recon, incr_s),
            ):
                for _ in range(WARMUPS):
                    restore_v1(con)
                    first = timed(lambda way=way, con=con: way(con, tolerance))[0]
                    if way is incremental_recon:
                        incr_first_s.append(first)
                restore_v1(con)
                cpu = time.process_time()
                seconds.append(timed(lambda way=way, con=con: way(con, tolerance))[0])
                if way is incremental_recon:
                    incr_cpu_s.append(time.process_time() - cpu)
                results.append(mismatch_rows(con))
            if results[0] != results[1]:
                raise SystemExit("the incremental reconciliations differ")
            ours_v2 = {row[0] for row in results[1]}
            if v2 is None:
                full_recon(con, tolerance)
                if mismatch_rows(con) != results[1]:
                    raise SystemExit("incremental reconciliation differs from a full one")
                v2 = export(con, work, "v2")
            log(f"incremental {r + 1}/{repeats}: {len(changed):,} changed keys; datacompy full")
            dc_v2, dc_keys_v2 = run_datacompy(python, *v2, tolerance, work)
            dc_v2_s += dc_v2["compare_s"]
            dc_v2_first_s += dc_v2["first_s"]
            dc_v2_cpu_s += dc_v2["compare_cpu_s"]
            if ours_v2 != dc_keys_v2:
                raise SystemExit(
                    f"after the change: ours {len(ours_v2)} keys, datacompy {len(dc_keys_v2)}"
                )
        con.close()

    full, bare, incr = spread(full_s, 4), spread(bare_s, 4), spread(incr_s, 4)
    full_first, dc_first = spread(full_first_s, 4), spread(dc_first_s, 4)
    plain, by_string = spread(plain_s, 4), spread(string_s, 4)
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
        "returnsync_full_first_s": full_first,
        "datacompy_full_first_s": dc_first,
        "full_first_run_ratio": round(dc_first["median"] / full_first["median"], 2),
        "returnsync_full_string_join_s": by_string,
        "full_string_join_ratio": round(dc_full["median"] / by_string["median"], 2),
        "bare_join_ratio": round(bare_ratio, 2),
        "returnsync_incremental_s": incr,
        "returnsync_incremental_cpu_s": incr_cpu,
        "returnsync_incremental_first_s": spread(incr_first_s, 4),
        "datacompy_full_after_change_first_s": spread(dc_v2_first_s, 4),
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
        f"full, joined on the stored md5 key, {fmt_spread(full, digits=3)} vs datacompy "
        f"{fmt_spread(dc_full, digits=3)} = {full_ratio:.1f}x (goal 4x; each after an untimed "
        f"run; first runs {full_first['median']:.3f} s vs {dc_first['median']:.3f} s = "
        f"{dc_first['median'] / full_first['median']:.1f}x; joined "
        f"on the key string {by_string['median']:.3f} s = "
        f"{dc_full['median'] / by_string['median']:.1f}x; bare full outer join "
        f"{bare_ratio:.1f}x); {len(changed):,} changed keys by the md5 key "
        f"{fmt_spread(incr, digits=4)} vs datacompy full {fmt_spread(dc_full_v2, digits=3)} = "
        f"{incr_ratio:.0f}x (goal 50x; CPU {incr_cpu['median']:.4f} s vs "
        f"{dc_full_v2_cpu['median']:.3f} s = {incr_cpu_ratio:.0f}x; plain string semi join "
        f"{plain['median']:.4f} s = {dc_full_v2['median'] / plain['median']:.0f}x)"
    )
    emit(line, summary, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
