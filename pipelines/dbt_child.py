"""`returnsync-dbt`: dbt that dies with the process that started it (DESIGN §12, Concurrency).

dagster-dbt and `pipelines.dbt.run_dbt` start dbt as a child process. When the run is killed
(SIGKILL, or a SIGTERM that ends it), a plain child would live on, holding the warehouse's write
lock, and the next run would fail. This console script asks Linux to send it SIGKILL when its
parent dies (`prctl(PR_SET_PDEATHSIG)`), then `exec`s the dbt installed beside this Python: the
setting survives the exec, so the dbt process itself carries it.

The parent may already be gone by the time this runs; the launcher passes its pid in
`RETURNSYNC_DBT_PARENT_PID` (removed before dbt starts, so dbt's own children do not inherit it):
when the parent is not that process and that process is gone (or, without the variable, the
parent is init), the launcher died first: exit at once. A stale value inherited from a live
ancestor is harmless: dbt starts. Elsewhere than Linux there is
no prctl and this is plain dbt. Imports only the standard library, so it adds ~30 ms to a dbt start.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pipelines.lib.processes import is_running

PARENT_ENV = "RETURNSYNC_DBT_PARENT_PID"
PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 137  # as if the death signal had arrived: 128 + SIGKILL


def die_with_parent() -> bool:
    """SIGKILL this process when its parent (the thread that started it) dies; False if the
    platform cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _orphaned(parent: int, expected: str | None) -> bool:
    """Whether the launcher is gone before dbt could start (see the module doc)."""
    if expected and expected.isdigit():
        return parent != int(expected) and not is_running(int(expected))
    return parent == 1


def main() -> None:
    expected_parent = os.environ.pop(PARENT_ENV, None)
    die_with_parent()
    if _orphaned(os.getppid(), expected_parent):  # it died before the death signal was armed
        print(f"returnsync-dbt: its launcher (pid {expected_parent}) is gone; dbt not started",
              file=sys.stderr)  # fmt: skip
        sys.exit(EXIT_ORPHANED)
    dbt = str(Path(sys.executable).with_name("dbt"))
    os.execv(dbt, [dbt, *sys.argv[1:]])


if __name__ == "__main__":
    main()
