"""`make demo`: the closed ERP loop on the live stack (DESIGN §13), start to finish.

Starts the stack (scripts/stack/stack.py), writes a small landscape's ERP side into Tryton
(`returnsync simulate --erp tryton --kafka`), lets Debezium capture it, runs returnsync on Kafka,
shows the open mismatches, pushes the ERP-native fixes, lets Debezium capture those, runs again,
prints which mismatches resolved, pushes again (nothing may be sent), and stops the stack.
Exit status 0 only when the loop closed: every mismatch whose fix was sent is resolved by the
next run, and the second push sends nothing.

    .venv/bin/python scripts/stack/demo.py [--returns 12] [--seed 22] [--keep]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loop import Loop, print_table, wait_captured  # noqa: E402


def _stack_module():
    spec = importlib.util.spec_from_file_location("returnsync_stack", HERE / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--returns", type=int, default=12)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    stack_mod = _stack_module()
    root = stack_mod.CACHE / "stack" / "demo"
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    print("== starting the live stack (PostgreSQL, Tryton, Kafka, Kafka Connect + Debezium)")
    stack = stack_mod.Stack(root / "stack").up()
    print(f"   up in {time.monotonic() - started:.0f} s: {stack.timings}")
    try:
        as_of = datetime.now(UTC).replace(second=0, microsecond=0).isoformat()
        loop = Loop(stack.env(), work, as_of, returns=args.returns, seed=args.seed)
        print(f"== {args.returns} returns into Tryton over JSON-RPC (as of {as_of})")
        print("   " + loop.simulate().strip().splitlines()[-1])
        bootstrap = stack.env()["RETURNSYNC_KAFKA_BOOTSTRAP"]
        captured = wait_captured(bootstrap)
        print(f"== Debezium captured {sum(captured.values())} change events")
        loop.run()
        before = loop.open_mismatches()
        print_table(f"open mismatches ({len(before)}): rule, RMA, sku", before)
        approved = loop.approve_waiting(by="demo")
        print(f"\n== approved {len(approved)} adjustment(s) over the auto-approve limits")
        print("\n== push (ERP-native fixes into Tryton)")
        print(loop.push().rstrip())
        sent = {
            (rule, rma, sku)
            for _id, rule, rma, sku, _action, status, _doc, _key in loop.adjustments()
            if status == "sent"
        }
        captured = wait_captured(bootstrap, at_least=sum(captured.values()) + 1)
        print(f"\n== Debezium captured the fixes ({sum(captured.values())} events in all)")
        loop.run()
        after = loop.open_mismatches()
        resolved = before - after
        print_table(f"resolved by the push ({len(resolved)})", resolved)
        unresolved = sent - resolved
        print_table(f"fixed but still open ({len(unresolved)})", unresolved)
        print("\n== second push")
        second = loop.push().strip()
        print(second)
        nothing_sent = "nothing approved to send" in second or second.startswith(
            "pushed: 0 created"
        )
        closed = bool(sent) and not unresolved and nothing_sent
        print("\n" + "\n".join(loop.log))
        print(
            f"\nloop {'CLOSED' if closed else 'NOT closed'}: {len(sent)} fixes sent, "
            f"{len(sent & resolved)} resolved, second push sent nothing: {nothing_sent}; "
            f"{time.monotonic() - started:.0f} s"
        )
        return 0 if closed else 1
    finally:
        if not args.keep:
            print("== stopping the stack")
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
