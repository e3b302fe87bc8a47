"""A server started in the background: the process handling scripts/kafka/broker.py (the Kafka
broker) and scripts/stack/stack.py (Kafka Connect, the stack's pids) share.

Standard library only, like the scripts that use it. They are scripts, not packages, and load
this file by its path under the module name `returnsync_server_process` (in sys.modules, so the
broker and the stack share one module and its dataclass resolves).

- `ServerProcess`: start a command in its own session with stdout and stderr appended to a log
  file and its pid in a pid file, wait until a readiness check passes (failing with the log's
  tail when the process exits or the time runs out), stop it (SIGTERM, then SIGKILL after a grace
  period) or kill it (SIGKILL, the crash tests make).
- `free_port`, `port_open`, `alive`, `stop_pid`, `tail`: the helpers around it, also for pids
  another process started (a stack brought up by `make stack-up`, stopped by `make stack-down`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int | None) -> bool:
    """The process exists (a child of ours that has ended is reaped, and is not alive)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_pid(
    pid: int | None, grace: float = 20.0, ended: Callable[[int], bool] | None = None
) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone. `ended`
    tells whether it has ended (default: not `alive`; a `Popen` owner passes its `poll`)."""
    ended = ended or (lambda p: not alive(p))
    if not pid or ended(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if ended(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while not ended(pid):
        time.sleep(0.1)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ("(no log)" when there is none)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class ServerProcess:
    """One background server: its log file, its pid file and, once started here, its `Popen`.

    `name` opens the error messages ("the Kafka broker exited with 1: ...").
    """

    name: str
    log_file: Path
    pid_file: Path
    tail_lines: int = 40
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(
        self,
        cmd: list[str],
        ready: Callable[[str], bool],
        timeout: float,
        poll: float = 0.2,
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        """Start `cmd` and wait until `ready(log)` is true, `log` being what the server wrote
        to its log file since this start. The process exiting first raises RuntimeError; no
        readiness within `timeout` seconds stops it (`on_timeout`, default `stop`) and raises
        TimeoutError, both with the log's tail."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        start_size = self.log_file.stat().st_size if self.log_file.exists() else 0
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.pid_file.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}"
                )
            with self.log_file.open("rb") as f:
                f.seek(start_size)
                text = f.read().decode(errors="replace")
            if ready(text):
                return
            time.sleep(poll)
        (on_timeout or self.stop)()
        raise TimeoutError(f"{self.name} did not start in {timeout:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        return tail(self.log_file, self.tail_lines)

    def running_pid(self) -> int | None:
        """The server's pid while it runs: ours (`proc`), else the pid file's if we may signal
        that process."""
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid if alive(pid) else None

    def _ended(self, pid: int) -> bool:
        if self.proc is not None and self.proc.pid == pid:
            return self.proc.poll() is not None
        return not alive(pid)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (the server's clean shutdown), SIGKILL if it has not ended after `grace`
        seconds; the pid file goes."""
        stop_pid(self.running_pid(), grace, self._ended)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown (what a crash test makes); returns once it is gone."""
        pid = self.running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while not self._ended(pid):
            time.sleep(0.05)
