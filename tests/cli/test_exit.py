"""A `returnsync` command ends without the interpreter's teardown (issue 24: ~1.5 CPU-s after a
`returnsync run`, freeing Dagster's, dbt's and the rest's objects one by one), but with its exit
handlers run, its output flushed and its exit code; and as before while a non-daemon thread is
still at work. Real processes: the teardown is what is tested."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from pathlib import Path

    out = Path(sys.argv[1])

    class TornDown:
        def __del__(self):  # runs in the interpreter's teardown only
            (out / "teardown").write_text("ran")

    KEPT = TornDown()
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    if sys.argv[2] == "busy-thread":
        def work():
            time.sleep(0.5)
            (out / "thread").write_text("done")
        threading.Thread(target=work).start()
    sys.stdout.write("x" * 200_000)  # buffered: lost unless flushed
    sys.argv = ["returnsync", *sys.argv[3:]]
    from pipelines.cli import main
    main()
    """
)


def _run(tmp_path: Path, mode: str, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    script = tmp_path / "cli.py"
    script.write_text(SCRIPT)
    out = tmp_path / mode
    out.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(out), mode, *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, {p.name for p in out.iterdir()}


def test_a_command_ends_without_teardown_with_its_output_and_exit_code(tmp_path):
    done, marks = _run(tmp_path, "idle", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x" * 200_000) and "version" in done.stdout
    assert marks == {"atexit"}  # exit handlers ran; no teardown


def test_an_error_keeps_its_exit_code_and_line(tmp_path):
    done, marks = _run(tmp_path, "idle", "report", "--no-such-option")
    assert done.returncode == 2
    assert done.stderr.startswith("returnsync: usage error:"), done.stderr
    assert "Traceback" not in done.stderr
    assert marks == {"atexit"}


def test_a_thread_still_at_work_is_waited_for_as_before(tmp_path):
    done, marks = _run(tmp_path, "busy-thread", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x" * 200_000)
    assert marks == {"atexit", "thread", "teardown"}  # the normal exit: thread, handlers, teardown
