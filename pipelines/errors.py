"""The errors a user can be shown, each with its exit code (DESIGN §12).

Library code raises these (they import nothing from click or Dagster); the CLI turns each into one
line on standard error and the exit code below. Anything else that escapes a command is a bug: the
CLI still prints one line, never a traceback.

| code | meaning |
|---|---|
| 0 | ok |
| 1 | the job failed, or finished partially (a source was stale) |
| 2 | usage or configuration error |
| 3 | the warehouse is still locked after RETURNSYNC_LOCK_WAIT_S |
| 4 | the ERP is unreachable or refused the credentials |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_ERP = 4


class ReturnsyncError(Exception):
    """An error meant for the user: its message is the one line they see."""

    exit_code = EXIT_FAILED


class JobFailed(ReturnsyncError):
    """A job failed, or finished with a source missing (partial)."""

    exit_code = EXIT_FAILED


class ConfigError(ReturnsyncError):
    """Bad usage or configuration: nothing was done."""

    exit_code = EXIT_USAGE


class WarehouseLocked(ReturnsyncError):
    """Another process still holds the warehouse after the lock wait."""

    exit_code = EXIT_LOCKED


class ErpUnavailable(ReturnsyncError):
    """The ERP cannot be reached, or it refused the credentials."""

    exit_code = EXIT_ERP
