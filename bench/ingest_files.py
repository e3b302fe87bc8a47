"""CDC file ingestion benchmark against DuckDB's own NDJSON reader (DESIGN §10; issue 23).

On the same `cdc/*.ndjson` files, in one run:

1. the reference: the ingestion reference query of STACK_NOTES.md ("The ingestion reference
   query"), unchanged (REFERENCE_QUERY below), in a fresh database file, timed from before the
   statement to after `select count(*) from lim`; best of two, one before and one after ours;
2. returnsync: `land_cdc_files` into a fresh warehouse with each decoder asked for
   (`reference`: orjson + TableDecoder per record; `columnar`: DuckDB's reader, cdc/columnar.py),
   wall and CPU seconds, peak RSS of the process.

Ratio = our records per second (rows landed + dead letters) / the query's rows per second. Goal:
>= 0.5. Prints one JSON line and appends a row to bench/RESULTS.md with the machine's load.

    .venv/bin/python bench/ingest_files.py --landing /tmp/landscape          # both decoders
    .venv/bin/python bench/ingest_files.py --returns 8000 --decoders columnar
    .venv/bin/python bench/ingest_files.py --landing DIR --rounds 2 --work /tmp/me/bench

`--rounds N` lands with each decoder N times, the order alternated per round (same load for
both); the row gives each decoder's fastest round and every round's wall and CPU seconds.

`--drops` measures the file drops instead (webhooks, Shopify refunds, Amazon reports, B2B CSVs,
reference files): `land_files` into a fresh warehouse with each decoder (`reference`: the
per-line readers; `columnar`: files/columnar.py for NDJSON, delimited._read_columnar for CSV/TSV),
on copies of the same drops, alternated (`--repeats` rounds), wall and CPU seconds; row
`file_drops_decoders`, ratio = the reference's best wall time / the column-wise one's (> 1:
column-wise is faster). `--drop-folders amazon,b2b,reference` measures the CSV/TSV drops alone.

    .venv/bin/python bench/ingest_files.py --drops --returns 20000 --repeats 2
    .venv/bin/python bench/ingest_files.py --drops --landing DIR --drop-folders amazon,b2b,reference
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

RESULTS = PROJECT_ROOT / "bench" / "RESULTS.md"
NAME = "cdc_files_vs_duckdb_reader"

# STACK_NOTES.md, "The ingestion reference query" (fixed; used unchanged; <files> filled in)
REFERENCE_QUERY = """
create or replace table lim as
  select topic, "partition", "offset", key,
         coalesce(json_extract_string(value, '$.payload.op'), json_extract_string(value, '$.op')) as op,
         coalesce(json_extract(value, '$.payload.after'), json_extract(value, '$.after')) as after
  from read_json(<files>, format='newline_delimited', ignore_errors=true,
       columns={'topic':'VARCHAR','partition':'INTEGER','offset':'BIGINT','key':'JSON','value':'JSON'});
"""  # noqa: E501


def reference_query(files: list[Path], tmp: Path) -> tuple[float, int]:
    import duckdb

    db = tmp / f"reader-{time.monotonic_ns()}.duckdb"
    con = duckdb.connect(str(db))
    try:
        sql = REFERENCE_QUERY.replace("<files>", repr([str(f) for f in files]))
        start = time.perf_counter()
        con.execute(sql)
        n = con.execute("select count(*) from lim").fetchone()[0]
        return time.perf_counter() - start, n
    finally:
        con.close()
        db.unlink(missing_ok=True)


def ours(landing: Path, decoder: str, tmp: Path) -> dict:
    from pipelines.lib.cdc.files import land_cdc_files
    from pipelines.lib.warehouse import connect

    db = tmp / f"ours-{decoder}.duckdb"
    con = connect(db)
    try:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # decoder "parallel": its workers
        cpu0, start = time.process_time(), time.perf_counter()
        summary = land_cdc_files(con, landing, progress=False, decoder=decoder)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += done.ru_utime + done.ru_stime - kids.ru_utime - kids.ru_stime
    finally:
        con.close()
        db.unlink(missing_ok=True)
    records = sum(summary.landed.values()) + summary.dead_letters + summary.duplicates
    return {
        "decoder": decoder,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "records": records,
        "rows": sum(summary.landed.values()),
        "dead_letters": summary.dead_letters,
        "columnar_rows": summary.columnar_rows,
        "per_s": round(records / wall),
    }


DROP_FOLDERS = ("returns_saas", "shopify", "amazon", "b2b", "reference")
DROPS_NAME = "file_drops_decoders"


def drops_once(
    landing: Path, decoder: str, tmp: Path, folders: tuple[str, ...] = DROP_FOLDERS
) -> dict:
    """`land_files` of a fresh copy of the drops (a quarantine moves files) with one decoder."""
    import shutil

    from pipelines.lib.files import land_files
    from pipelines.lib.warehouse import connect

    copy = tmp / f"drops-{decoder}"
    shutil.rmtree(copy, ignore_errors=True)
    for name in folders:
        if (landing / name).is_dir():
            shutil.copytree(landing / name, copy / name)
    db = tmp / f"drops-{decoder}.duckdb"
    con = connect(db)
    try:
        cpu0, start = time.process_time(), time.perf_counter()
        summaries = land_files(con, copy, decoder=decoder)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        dead = con.execute("select position, error from meta.dead_letters order by all").fetchall()
    finally:
        con.close()
        db.unlink(missing_ok=True)
        shutil.rmtree(copy, ignore_errors=True)
    ndjson = ("returns_saas_webhooks", "shopify_refunds")
    return {
        "decoder": decoder,
        "wall_s": wall,
        "cpu_s": cpu,
        "rows": sum(s.rows for s in summaries.values()),
        "ndjson_rows": sum(summaries[t].rows for t in ndjson if t in summaries),
        "dead_letters": sum(s.dead_letters for s in summaries.values()),
        "columnar_rows": sum(s.columnar_rows for s in summaries.values()),
        "dead_letter_set": dead,
    }


def drops_main(args, landing: Path, tmp: Path) -> dict:
    from bench._common import fmt_spread, spread

    folders = tuple(args.drop_folders.split(","))
    size_mb = (
        sum(f.stat().st_size for name in folders for f in (landing / name).glob("*") if f.is_file())
        / 1e6
    )
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict]] = {d: [] for d in args.decoders.split(",")}
    for _ in range(args.repeats):
        for decoder in runs:
            runs[decoder].append(drops_once(landing, decoder, tmp, folders))
            load.append(os.getloadavg()[0])
    firsts = [r[0] for r in runs.values()]
    same = all(
        (r["rows"], r["dead_letters"], r["dead_letter_set"])
        == (firsts[0]["rows"], firsts[0]["dead_letters"], firsts[0]["dead_letter_set"])
        for r in firsts
    )
    best = {d: min(r["wall_s"] for r in rs) for d, rs in runs.items()}
    parts = []
    for decoder, rs in runs.items():
        r0 = rs[0]
        parts.append(
            f"{decoder} {fmt_spread(spread([r['wall_s'] for r in rs]))} wall, "
            f"{fmt_spread(spread([r['cpu_s'] for r in rs]), 'CPU-s')} = "
            f"{r0['rows'] / best[decoder]:,.0f} rows/s ({r0['rows']:,} rows, "
            f"{r0['ndjson_rows']:,} of them NDJSON, {r0['columnar_rows']:,} converted in SQL, "
            f"{r0['dead_letters']} dead letters)"
        )
    ratio = best["reference"] / best["columnar"] if {"reference", "columnar"} <= set(best) else None
    cpu = {d: statistics.median(r["cpu_s"] for r in rs) for d, rs in runs.items()}
    if {"reference", "columnar"} <= set(cpu):
        parts.append(
            f"CPU ratio (reference / columnar, medians) {cpu['reference'] / cpu['columnar']:.2f}"
        )
    figures = (
        f"file drops of {landing.name}"
        + (f" ({', '.join(folders)} only)" if set(folders) != set(DROP_FOLDERS) else "")
        + f" ({size_mb:,.1f} MB): "
        + "; ".join(parts)
        + f"; same rows and dead letters: {'yes' if same else 'NO'}; load1 "
        + ", ".join(f"{x:.1f}" for x in load)
        + " on 2 cores shared"
    )
    return {
        "name": DROPS_NAME,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "figures": figures,
        "reference": "the per-line reader (decoder reference: fastrow builder, then RowConverter; "
        "CSV/TSV: the csv module per line) on the same drops, same run, alternated; ratio = its "
        "best wall / the column-wise best",
        "ratio": round(ratio, 3) if ratio else "",
        "versions": f"python {sys.version.split()[0]}, duckdb {version('duckdb')}, "
        f"orjson {version('orjson')}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, help="a landing directory (with cdc/)")
    parser.add_argument(
        "--returns", type=int, default=8000, help="simulate this many (no --landing)"
    )
    parser.add_argument("--decoders", default="reference,columnar")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--work", type=Path, help="scratch directory (default: the system's)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="CDC files: land with each decoder this many times, the order alternated per round",
    )
    parser.add_argument("--drops", action="store_true", help="measure the file drops instead")
    parser.add_argument("--repeats", type=int, default=2, help="--drops: alternated rounds")
    parser.add_argument(
        "--drop-folders",
        default=",".join(DROP_FOLDERS),
        help="--drops: these folders only (e.g. amazon,b2b,reference: the CSV/TSV drops)",
    )
    args = parser.parse_args()
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-files-", dir=args.work) as t:
        tmp = Path(t)
        landing = args.landing
        if landing is None:
            from returnsync_sim import simulate

            landing = tmp / "landing"
            simulate(args.returns, 7, landing, None, progress=False)
        if args.drops:
            row = drops_main(args, landing, tmp)
            print(json.dumps(row))
            if not args.no_append:
                with open(RESULTS, "a", encoding="utf-8") as fh:
                    fh.write(
                        f"| {row['date']} | {row['name']} | {row['figures']} | "
                        f"{row['reference']} | {row['ratio']} | {row['versions']} |\n"
                    )
            return
        from pipelines.lib.cdc.files import cdc_files

        files = cdc_files(landing)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        load = [os.getloadavg()[0]]
        before = reference_query(files, tmp)
        decoders = args.decoders.split(",")
        rounds: dict[str, list[dict]] = {d: [] for d in decoders}
        for r in range(max(1, args.rounds)):
            for decoder in decoders if r % 2 == 0 else decoders[::-1]:
                rounds[decoder].append(ours(landing, decoder, tmp))
                load.append(os.getloadavg()[0])
        # per decoder: its fastest round, with every round's CPU seconds beside it
        runs = []
        for rs in rounds.values():
            best_run = dict(min(rs, key=lambda x: x["wall_s"]))
            best_run["cpu_runs"] = [x["cpu_s"] for x in rs]
            best_run["wall_runs"] = [x["wall_s"] for x in rs]
            runs.append(best_run)
        after = reference_query(files, tmp)
        load.append(os.getloadavg()[0])
    best = min(before[0], after[0])
    reader_rate = before[1] / best
    fastest = max(runs, key=lambda r: r["per_s"])
    ratio = fastest["per_s"] / reader_rate
    figures = (
        f"{len(files)} files, {size_mb:,.0f} MB, {before[1]:,} records: DuckDB reader (reference "
        f"query) {best:.2f} s (runs {before[0]:.2f}, {after[0]:.2f}) = {reader_rate:,.0f}/s; "
        + "; ".join(
            f"{r['decoder']} {r['wall_s']} s wall, {r['cpu_s']} CPU-s = {r['per_s']:,}/s "
            f"({r['rows']:,} rows, {r['dead_letters']} dead letters, {r['columnar_rows']:,} "
            "decoded in SQL"
            + (
                f"; {len(r['cpu_runs'])} rounds alternated: wall {r['wall_runs']} s, "
                f"CPU {r['cpu_runs']} s"
                if len(r["cpu_runs"]) > 1
                else ""
            )
            + ")"
            for r in runs
        )
        + f"; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB; "
        f"load1 {', '.join(f'{x:.1f}' for x in load)} on 2 cores shared"
    )
    row = {
        "name": NAME,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "figures": figures,
        "reference": "STACK_NOTES ingestion reference query (read_json, ignore_errors), same "
        "files, same run, best of 2",
        "ratio": round(ratio, 3),
        "versions": f"python {sys.version.split()[0]}, duckdb {version('duckdb')}, "
        f"orjson {version('orjson')}",
    }
    print(json.dumps(row))
    if not args.no_append:
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(
                f"| {row['date']} | {NAME} | {figures} | {row['reference']} | {row['ratio']} "
                f"| {row['versions']} |\n"
            )


if __name__ == "__main__":
    main()
