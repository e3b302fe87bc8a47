"""Peak memory landing one big CDC file (DESIGN §3, §10; issue 23: <= 512 MB for a 2 GB file).

Writes one `cdc/erp.public.sale_line.ndjson` of about --size-mb MB (bare Debezium envelopes,
distinct positions; a few schema-wrapped, a few bad lines), lands it in a child process with the
decoder asked for, and reports the child's peak RSS (and its baseline: the same child importing
the landing code and landing nothing). Chunked landing holds one chunk at a time, so the peak
should not grow with the file: run two sizes to see it.

    .venv/bin/python bench/memory_cdc.py --size-mb 2000 --decoder columnar
    .venv/bin/python bench/memory_cdc.py --size-mb 300 --decoder reference --no-append
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "bench" / "RESULTS.md"
GOAL_MB = 512

CHILD = """
import resource, sys, time
from pathlib import Path
from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.warehouse import connect
con = connect(sys.argv[1])
if sys.argv[3] == "baseline":
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, 0, 0, 0)
    sys.exit()
start = time.perf_counter()
s = land_cdc_files(con, Path(sys.argv[2]), progress=False, decoder=sys.argv[3])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, time.perf_counter() - start,
      sum(s.landed.values()), s.dead_letters)
"""


def write_file(path: Path, size_mb: int) -> int:
    """One sale_line topic file of ~size_mb MB; returns its line count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "connectors.json").write_text(
        json.dumps({"erp": {"decimal.handling.mode": "precise"}})
    )
    target = size_mb * 1_000_000
    n = written = 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            lines = []
            for i in range(n, n + 10_000):
                price = base64.b64encode(
                    (1000 + i % 99_999).to_bytes(4, "big", signed=True)
                ).decode()
                value = (
                    f'{{"before":null,"after":{{"id":{i},"sale":{i // 3},'
                    f'"product":{1000 + i % 500},'
                    f'"quantity":{1 + i % 7}.0,"unit_price":"{price}","description":"Item {i}"}},'
                    f'"source":{{"version":"3.6.0.Final","connector":"postgresql","name":"erp",'
                    f'"ts_ms":{1_794_883_548_000 + i},"snapshot":"false","db":"tryton",'
                    f'"schema":"public","table":"sale_line","txId":{700_000 + i},'
                    f'"lsn":{10**12 + i}}},'
                    f'"op":"c","ts_ms":{1_794_883_548_500 + i}}}'
                )
                if i % 100_003 == 7:
                    value = '"not json {"'  # a dead letter now and then
                lines.append(
                    f'{{"topic":"erp.public.sale_line","partition":{i % 3},"offset":{i // 3},'
                    f'"key":{{"id":{i}}},"value":{value}}}\n'
                )
            text = "".join(lines)
            fh.write(text)
            written += len(text)
            n += 10_000
    return n


def child(db: Path, landing: Path, mode: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), str(landing), mode],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
    )
    return [float(x) for x in out.stdout.strip().splitlines()[-1].split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="the goal is 2000")
    parser.add_argument("--decoder", default="columnar")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-cdc-", dir=os.environ.get("TMPDIR")) as t:
        tmp = Path(t)
        landing = tmp / "landing"
        path = landing / "cdc" / "erp.public.sale_line.ndjson"
        lines = write_file(path, args.size_mb)
        size = path.stat().st_size
        baseline = child(tmp / "base.duckdb", landing, "baseline")[0]
        load0 = os.getloadavg()[0]
        peak, seconds, rows, dead = child(tmp / "w.duckdb", landing, args.decoder)
        load1 = os.getloadavg()[0]
    figures = (
        f"one {size / 1e6:,.0f} MB CDC file ({lines:,} lines), decoder {args.decoder}: peak RSS "
        f"{peak:.0f} MB (baseline {baseline:.0f} MB, goal {GOAL_MB} MB); {seconds:.1f} s, "
        f"{rows:,.0f} rows, {dead:.0f} dead letters, {rows / seconds:,.0f} rows/s; load1 "
        f"{load0:.1f}, {load1:.1f} on 2 cores shared"
    )
    row = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "name": "ingest_memory_cdc_file",
        "figures": figures,
        "reference": f"goal {GOAL_MB} MB peak RSS for a 2 GB file",
        "ratio": round(GOAL_MB / peak, 2),
    }
    print(json.dumps(row))
    if not args.no_append:
        import duckdb

        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(
                f"| {row['date']} | {row['name']} | {figures} | {row['reference']} | "
                f"{row['ratio']} | python {sys.version.split()[0]}, duckdb {duckdb.__version__} |\n"
            )


if __name__ == "__main__":
    main()
