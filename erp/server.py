"""Start and stop a real Tryton server on 127.0.0.1 for the demo and the tests (DESIGN §8).

Standard library only: runs under any Python 3.11 (the project's `.venv` or `.venv-erp`); the
server itself runs from `.venv-erp`.

    python erp/server.py start [--port 8000] [--dir data/tryton] [--fresh]  # back when it answers
    python erp/server.py stop  [--dir data/tryton]
    python erp/server.py run   [--port 8000] [--dir data/tryton]            # foreground (make erp)

`start` copies the prepared database from `erp/setup_db.py`'s cache into `--dir` (once, or again
with `--fresh`), deletes any `-wal`/`-shm` files of the copy, starts `trytond` listening on
127.0.0.1:PORT only, waits until it answers JSON-RPC and prints the RETURNSYNC_ERP_* settings to
export (the password of the local dev database included: it is not a secret of any real system).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
ERP_VENV = PROJECT_ROOT / ".venv-erp"
DATABASE_NAME = "returnsync"
ADMIN_LOGIN = "admin"
DEFAULT_PASSWORD = "returnsync-dev"
DEFAULT_DIR = PROJECT_ROOT / "data" / "tryton"


@dataclass
class TrytonServer:
    """A running `trytond` process serving one SQLite database directory."""

    process: subprocess.Popen
    port: int
    directory: Path
    database: str = DATABASE_NAME
    user: str = ADMIN_LOGIN
    password: str = field(default=DEFAULT_PASSWORD, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def prepared_database(password: str = DEFAULT_PASSWORD) -> Path:
    """The cached prepared database, built by `erp/setup_db.py` under `.venv-erp` if missing."""
    python = ERP_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(
            f"{python} is missing: create the ERP venv first (python3.11 -m venv .venv-erp && "
            ".venv-erp/bin/pip install uv && .venv-erp/bin/uv pip install --python "
            ".venv-erp/bin/python -r erp/requirements.lock)"
        )
    out = subprocess.run(
        [str(python), str(HERE / "setup_db.py"), "--password", password],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


def copy_database(directory: Path, password: str = DEFAULT_PASSWORD) -> Path:
    """Copy the prepared database into `directory` (replacing what is there)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{DATABASE_NAME}.sqlite"
    for suffix in ("-wal", "-shm", "-journal"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    shutil.copyfile(prepared_database(password), target)
    return target


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(
    directory: Path,
    port: int | None = None,
    *,
    fresh: bool = True,
    password: str = DEFAULT_PASSWORD,
    log: Path | None = None,
    timeout: float = 60,
    database_uri: str | None = None,
) -> TrytonServer:
    """Start `trytond` on 127.0.0.1:`port` over a copy of the prepared database in `directory`.

    With `database_uri` (`postgresql://user@host:port/`, the live stack of DESIGN §13) the server
    uses that PostgreSQL server's database `returnsync` instead, which the caller prepared
    (scripts/stack/stack.py restores it); `directory` then only holds the log.
    Returns once the server answers JSON-RPC and has loaded the database.
    """
    directory = Path(directory).resolve()
    port = port or free_port()
    if database_uri:
        directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TRYTOND_DATABASE__URI": database_uri}
    else:
        if fresh or not (directory / f"{DATABASE_NAME}.sqlite").exists():
            copy_database(directory, password)
        env = {
            **os.environ,
            "TRYTOND_DATABASE__URI": "sqlite://",
            "TRYTOND_DATABASE__PATH": str(directory),
        }
    env["TRYTOND_WEB__LISTEN"] = f"127.0.0.1:{port}"
    log_file = open(log or directory / "trytond.log", "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [str(ERP_VENV / "bin" / "trytond"), "-d", DATABASE_NAME],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log_file.close()
    server = TrytonServer(process, port, directory, password=password)
    try:
        wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: TrytonServer, timeout: float) -> None:
    """Poll until the database answers (a login also loads its modules, the slow first step)."""
    deadline = time.monotonic() + timeout
    body = json.dumps(
        {
            "id": 0,
            "method": "common.db.login",
            "params": [server.user, {"password": server.password}],
        }
    ).encode()
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"trytond exited with {server.process.returncode}; "
                f"see {server.directory}/trytond.log"
            )
        try:
            request = urllib.request.Request(
                f"{server.url}/{server.database}/rpc/", data=body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=30) as response:
                if "result" in json.load(response):
                    return
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"trytond did not answer on {server.url} within {timeout} s: {last}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pidfile(directory: Path) -> Path:
    return Path(directory).resolve() / "trytond.pid"


def main() -> None:
    parser = argparse.ArgumentParser(description="Start or stop the local Tryton server.")
    parser.add_argument("action", choices=["start", "stop", "run"], help="what to do")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="database directory (default data/tryton)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="replace the database with a new prepared copy"
    )
    args = parser.parse_args()
    pidfile = _pidfile(args.dir)
    if args.action == "stop":
        if not pidfile.exists():
            print("no Tryton server running from", args.dir, file=sys.stderr)
            return
        pid = int(pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        pidfile.unlink()
        print("stopped trytond", pid, file=sys.stderr)
        return
    if pidfile.exists():
        if _alive(int(pidfile.read_text())):
            sys.exit(f"a server already runs from {args.dir} (pid {pidfile.read_text().strip()})")
        pidfile.unlink()  # left behind by a server that did not stop cleanly

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)  # stopping this script stops the server it starts
    print("starting trytond (preparing the database once takes ~40 s)...", file=sys.stderr)
    server = start(args.dir, args.port, fresh=args.fresh)
    pidfile.write_text(str(server.process.pid))
    print(f"export RETURNSYNC_ERP_URL={server.url}")
    print(f"export RETURNSYNC_ERP_DATABASE={server.database}")
    print(f"export RETURNSYNC_ERP_USER={server.user}")
    print(f"export RETURNSYNC_ERP_PASSWORD={server.password}")
    if args.action == "run":
        print("serving; Ctrl-C stops it", file=sys.stderr)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            server.stop()
        finally:
            pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the server it was starting has been stopped already
        sys.exit(130)
