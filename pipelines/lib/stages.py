"""Stage markers: where a run is, written for whoever watches it (the kill tests, an operator).

When `RETURNSYNC_STAGE_MARKER` names a file, `mark(stage)` appends one line `<stage> <pid>` to it
and flushes, at the start of each stage of a run (`landing`, `dbt`, `publish`, `writeback`, …).
A test that kills a run reads the file to know which stage the kill hit, instead of guessing by
time. Unset (the default), it does nothing.
"""

from __future__ import annotations

import os

MARKER_ENV = "RETURNSYNC_STAGE_MARKER"


def mark(stage: str) -> None:
    path = os.environ.get(MARKER_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{stage} {os.getpid()}\n")
        handle.flush()
        os.fsync(handle.fileno())
