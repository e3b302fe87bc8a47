"""The `returnsync` command line (DESIGN §7).

Each subcommand lives in its own module under `pipelines.cli` and is imported only when it is
called, so `returnsync --help` stays fast and does not import Dagster or dbt.

Errors (DESIGN §12): whatever a command raises ends as one line on standard error and an exit
code, never a traceback: a `ReturnsyncError` (`pipelines.errors`) prints `returnsync: error:
<message>` with its own code (1 failed or partial, 2 configuration, 3 warehouse locked, 4 ERP
unreachable or refusing the credentials); a usage error (unknown option, bad value) prints
`returnsync: usage error: ...` with code 2; anything else is a bug: one line naming it and the
file its traceback was written to (under <data dir>/logs), code 1.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from pipelines.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ReturnsyncError

PROG = "returnsync"

# command name -> "module:attribute"; every module exists (tests/test_cli.py imports each)
COMMANDS: dict[str, str] = {
    "run": "pipelines.cli.run:run",
    "ingest": "pipelines.cli.ingest:ingest",
    "simulate": "pipelines.cli.simulate:simulate",
    "report": "pipelines.cli.report:report",
    "acknowledge": "pipelines.cli.acknowledge:acknowledge",
    "unacknowledge": "pipelines.cli.acknowledge:unacknowledge",
    "adjustments": "pipelines.cli.queues:adjustments",
    "exceptions": "pipelines.cli.queues:exceptions",
    "dead-letters": "pipelines.cli.queues:dead_letters",
    "quarantine": "pipelines.cli.queues:quarantine",
    "approve": "pipelines.cli.queues:approve",
    "reject": "pipelines.cli.queues:reject",
    "push": "pipelines.cli.adjustments:push",
    "replay": "pipelines.cli.replay:replay",
    "sql": "pipelines.cli.analyst:sql",
    "shell": "pipelines.cli.analyst:shell",
    "prepare": "pipelines.cli.prepare:prepare",
    "docs": "pipelines.cli.docs:docs",
    "trace": "pipelines.cli.trace:trace",
    "watch": "pipelines.cli.watch:watch",
}


def one_line(text: str) -> str:
    """A message as one line (an error message that spans lines is joined)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _say(prefix: str, message: str) -> None:
    line = f"{PROG}: {prefix}: {one_line(message)}" if message else f"{PROG}: {prefix}"
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # standard error is closed or gone: the exit code still says it
        pass


def _write_traceback(exc: BaseException) -> Path | None:
    """The traceback of an unexpected error, in <data dir>/logs/crash-*.txt (else the temp dir)."""
    text = "".join(traceback.format_exception(exc))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"crash-{stamp}-{os.getpid()}.txt"
    folders = []
    try:
        from pipelines.settings import Settings

        folders.append(Settings.from_env().data_dir / "logs")
    except Exception:  # bad settings must not hide the original error
        pass
    folders.append(Path(tempfile.gettempdir()))
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(f"{PROG} {' '.join(sys.argv[1:])}\n\n{text}", encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def handle_error(exc: BaseException) -> int:
    """Print `exc` as one line on standard error; return the exit code (DESIGN §12)."""
    if isinstance(exc, ReturnsyncError):
        _say("error", str(exc) or type(exc).__name__)
        return exc.exit_code
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):  # bare `returnsync`: the help
        click.echo(exc.format_message())
        return EXIT_USAGE
    if isinstance(exc, click.UsageError):
        hint = ""
        if exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        _say("usage error", exc.format_message() + hint)
        return EXIT_USAGE
    if isinstance(exc, click.ClickException):
        _say("error", exc.format_message())
        return exc.exit_code
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        _say("interrupted", "")
        return EXIT_FAILED
    if isinstance(exc, BrokenPipeError):  # e.g. `returnsync report | head`: the reader left
        with_devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(with_devnull, sys.stdout.fileno())
        return EXIT_FAILED
    where = _write_traceback(exc)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    place = f"; traceback in {where}" if where else ""
    _say("error", f"unexpected {one_line(detail)} (a bug{place})")
    return EXIT_FAILED


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's `main`, with every error turned into one line and its exit code.

        Run as a command (`args` from the command line, not a test's runner), the process then
        ends without tearing the interpreter down (`exit_process`)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        if not sys.warnoptions:  # library deprecation notices are not for the user
            warnings.simplefilter("ignore")
        end = exit_process if args is None else sys.exit
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:  # the one place every error ends
            end(handle_error(exc))
        end(code if isinstance(code, int) else EXIT_OK)


def exit_process(code: int) -> NoReturn:
    """End this process with `code` once its command is done: the exit handlers run (`atexit`:
    logging's flush, temporary directories, Dagster's and dbt's own) and the output is flushed,
    but the interpreter's teardown, which frees every object of Dagster, dbt, Great Expectations
    and polars one by one (~1.5 CPU-s, 2-3 s at load, after a `returnsync run`), is skipped.

    Only when nothing else is still running: with a non-daemon thread left (work the normal
    exit would wait for) it is `sys.exit`, as before. Every warehouse connection is closed by
    then (they are opened in `with` blocks; the watch releases dbt's)."""
    import atexit
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or the reader left (`returnsync report | head`)
            code = code or EXIT_FAILED
    os._exit(code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="returnsync")
def main() -> None:
    """returnsync keeps returns in step across channels, warehouses and the ERP.

    Configuration comes from RETURNSYNC_* environment variables (see .env.example);
    flags override them. Exit status: 0 ok, 1 failed or partial, 2 usage or configuration
    error, 3 warehouse still locked, 4 ERP unreachable or credentials refused.
    """
