"""CDC file ingestion against dlt loading the same records into DuckDB (DESIGN §10; issue 23).

On the same `cdc/*.ndjson` files, in one run:

1. returnsync: `land_cdc_files` (decoder asked for) into a fresh warehouse: decoded, typed,
   ledgered, dead letters;
2. dlt 1.31 (`dlt[duckdb]`), the loader a user would pick, in its own environment
   (`.cache/bench/dlt-venv`, created on first use from bench/requirements-dlt.txt with uv), in a
   child process: each line parsed (orjson), the record's topic, partition, offset, op and row
   image yielded as a dict to a `dlt.pipeline(destination="duckdb")`, one table per topic. dlt
   infers the schema and normalizes; it decodes no Debezium types (base64 decimals stay strings).

Ratio = our records per second / dlt's rows per second. Goal: >= 50. Prints one JSON line and
appends a row to bench/RESULTS.md with the machine's load.

    .venv/bin/python bench/ingest_dlt.py                     # 2,000 simulated returns
    .venv/bin/python bench/ingest_dlt.py --landing /tmp/landscape --decoder columnar
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.ingest_files import ours  # noqa: E402

RESULTS = PROJECT_ROOT / "bench" / "RESULTS.md"
VENV = PROJECT_ROOT / ".cache" / "bench" / "dlt-venv"
REQUIREMENTS = PROJECT_ROOT / "bench" / "requirements-dlt.txt"

DLT_CHILD = """
import json, sys, time
from pathlib import Path
import dlt, orjson

files = [Path(p) for p in json.loads(sys.argv[1])]
def rows(path):
    with open(path, "rb") as fh:
        for line in fh:
            try:
                rec = orjson.loads(line)
                value = rec.get("value")
                env = value.get("payload", value) if isinstance(value, dict) else None
            except Exception:
                continue
            if not isinstance(env, dict):
                continue
            yield {"topic": rec["topic"], "partition": rec["partition"], "offset": rec["offset"],
                   "op": env.get("op"), **(env.get("after") or {})}

pipeline = dlt.pipeline(pipeline_name="bench_cdc", destination=dlt.destinations.duckdb(sys.argv[2]),
                        dataset_name="raw", pipelines_dir=sys.argv[3], progress="log")
start = time.perf_counter()
total = 0
for path in files:
    pipeline.run(rows(path), table_name=path.stem.replace(".", "_"))
with pipeline.sql_client() as client:
    for path in files:
        name = path.stem.replace(".", "_")
        try:
            total += client.execute_sql(f"select count(*) from {name}")[0][0]
        except Exception:
            pass
print(json.dumps({"seconds": time.perf_counter() - start, "rows": total}))
"""


def dlt_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).with_name("uv")
        subprocess.run([str(uv), "venv", "-q", "--python", "3.11", str(VENV)], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", str(python), "-r", str(REQUIREMENTS)],
            check=True,
        )
    return python


def run_dlt(files: list[Path], tmp: Path) -> dict:
    env = {**os.environ, "RUNTIME__LOG_LEVEL": "WARNING", "DLT_TELEMETRY_DISABLED": "1",
           "RUNTIME__DLTHUB_TELEMETRY": "false"}  # fmt: skip
    out = subprocess.run(
        [str(dlt_python()), "-c", DLT_CHILD, json.dumps([str(f) for f in files]),
         str(tmp / "dlt.duckdb"), str(tmp / "dlt-pipelines")],
        capture_output=True, text=True, env=env, check=True, cwd=tmp,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, help="a landing directory (with cdc/)")
    parser.add_argument(
        "--returns", type=int, default=2000, help="simulate this many (no --landing)"
    )
    parser.add_argument("--decoder", default="reference")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    from pipelines.lib.cdc.files import cdc_files

    with tempfile.TemporaryDirectory(prefix="bench-ingest-dlt-") as t:
        tmp = Path(t)
        if args.landing is None:
            from returnsync_sim import simulate

            args.landing = tmp / "landing"
            simulate(args.returns, 7, args.landing, None, progress=False)
        files = cdc_files(args.landing)
        load = [os.getloadavg()[0]]
        mine = ours(args.landing, args.decoder, tmp)
        load.append(os.getloadavg()[0])
        start = time.perf_counter()
        peer = run_dlt(files, tmp)
        load.append(os.getloadavg()[0])
        peer_wall = time.perf_counter() - start
    peer_rate = peer["rows"] / peer["seconds"]
    ratio = mine["per_s"] / peer_rate
    figures = (
        f"{len(files)} files, {mine['records']:,} records: returnsync ({args.decoder}) "
        f"{mine['wall_s']} s = {mine['per_s']:,}/s ({mine['cpu_s']} CPU-s); dlt "
        f"{peer['seconds']:.1f} s = {peer_rate:,.0f}/s ({peer['rows']:,} rows; child "
        f"{peer_wall:.1f} s with start-up); load1 {', '.join(f'{x:.1f}' for x in load)} on 2 "
        "cores shared"
    )
    row = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "name": "cdc_files_vs_dlt",
        "figures": figures,
        "reference": "dlt 1.31 pipeline.run of the same records (topic, position, op, row image) "
        "into DuckDB, own venv, same files, same run",
        "ratio": round(ratio, 2),
    }
    print(json.dumps(row))
    if not args.no_append:
        import duckdb

        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(
                f"| {row['date']} | {row['name']} | {figures} | {row['reference']} | "
                f"{row['ratio']} | python {sys.version.split()[0]}, duckdb {duckdb.__version__}, "
                "dlt 1.31.0 |\n"
            )


if __name__ == "__main__":
    main()
