"""Speed of `simulate --erp tryton`: returns per minute written into a real Tryton (DESIGN §13).

Starts the live stack's PostgreSQL and Tryton (scripts/stack/stack.py; Kafka and Connect are not
needed to measure the loader, so Debezium is not registered), simulates a landscape as files,
and times the loader replaying its ERP side into Tryton over JSON-RPC (returnsync_sim/tryton/).

    .venv/bin/python bench/tryton_load.py [--returns 30] [--seed 22] [--no-append]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PROJECT_ROOT, emit, log, result_line


def _stack_module():
    spec = importlib.util.spec_from_file_location(
        "returnsync_stack", PROJECT_ROOT / "scripts" / "stack" / "stack.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--returns", type=int, default=30)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--no-append", action="store_true", help="do not add a RESULTS.md row")
    args = parser.parse_args()

    from pipelines.lib.erp.tryton import TrytonClient
    from returnsync_sim import SimOptions, simulate
    from returnsync_sim.tryton import load

    stack_mod = _stack_module()
    root = Path(tempfile.mkdtemp(prefix="returnsync-bench-stack-"))
    root.chmod(0o755)
    pg = stack_mod.Postgres(root / "pg")
    tryton = None
    try:
        pg.start()
        stack_mod.restore_erp_database(pg)
        tryton = stack_mod._erp_server_module().start(
            root / "tryton", database_uri=pg.uri, fresh=False, timeout=120
        )
        landing = root / "landing"
        options = replace(SimOptions(), noise=False)
        simulate(args.returns, args.seed, landing, None, options, progress=False)
        client = TrytonClient(
            tryton.url, tryton.database, tryton.user, tryton.password, timeout=300
        )
        client.login()
        log(f"loading {args.returns} returns into Tryton ...")
        result = load(landing, client)
    finally:
        if tryton is not None:
            tryton.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    per_minute = 60 * result.returns / result.seconds
    figures = {**result.as_dict(), "returns_per_minute": round(per_minute, 1)}
    summary = (
        f"{result.returns} returns ({result.sales} orders, {result.credit_notes} credit notes, "
        f"{result.moves_done} put-away moves) written into Tryton 8.2 on PostgreSQL over JSON-RPC "
        f"in {result.seconds:.1f} s: {per_minute:.1f} returns/min"
    )
    line = result_line("tryton_load", figures, "none (absolute figure)", None)
    emit(line, summary, append=not args.no_append)


if __name__ == "__main__":
    main()
