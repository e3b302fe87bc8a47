"""The real `returnsync` CLI with one fault injected first, for the cases no input can cause
once the readers are robust: a reader that crashes (a bug), a command that hits a bug.

    python -m tests.cli.faults crash-source shopify_refunds -- run --landing DIR
    python -m tests.cli.faults bug -- report
"""

from __future__ import annotations

import sys


def _crash_source(raw_table: str) -> None:
    import pipelines.lib.files as files

    real = files.land_files

    def land_files(con, landing_dir, *, sources=None, **kwargs):
        if sources is not None and list(sources) == [raw_table]:
            raise RuntimeError(f"injected crash of the {raw_table} reader")
        return real(con, landing_dir, sources=sources, **kwargs)

    files.land_files = land_files


def _bug() -> None:
    import pipelines.lib.recon.lifecycle as lifecycle

    def list_mismatches(*args, **kwargs):
        raise TypeError("injected bug")

    lifecycle.list_mismatches = list_mismatches


def main() -> None:
    split = sys.argv.index("--")
    fault, args = sys.argv[1:split], sys.argv[split + 1 :]
    if fault[0] == "crash-source":
        _crash_source(fault[1])
    elif fault[0] == "bug":
        _bug()
    else:
        raise SystemExit(f"unknown fault {fault}")
    from pipelines.cli import main as cli

    sys.argv = ["returnsync", *args]
    cli()


if __name__ == "__main__":
    main()
