"""Whether a process still runs: one answer for every piece of code that asks (standard library
only, so `returnsync-dbt` can import it before it execs dbt)."""

from __future__ import annotations

import os


def is_running(pid: int) -> bool:
    """The process exists and is not a zombie (a killed process its parent has not reaped yet
    is one). Another user's process counts as running."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (not Linux): it exists
        return True
