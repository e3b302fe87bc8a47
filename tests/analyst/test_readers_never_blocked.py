"""An analyst holding the published marts open never blocks a run, and is never blocked by one.

Real processes, as in production: a reader process keeps a connection open and queries in a loop
while `returnsync run` rebuilds in another process.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

READER = r"""
import json, os, pathlib, sys, time, duckdb
path, stop, marker = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
con = duckdb.connect(path, read_only=True)  # held open for the whole rebuild
reads = []
errors = 0
while not stop.exists():
    try:
        con.execute("select count(*) from marts.returns").fetchone()
        seen = con.execute("select published_at from published").fetchone()[0]
        # what the path names now (the swap replaces the file) and how far the run is
        stage = marker.read_text().split() if marker.exists() else []
        reads.append([os.stat(path).st_ino, str(seen), "publish" in stage])
    except Exception as exc:  # a lock error or a half-written file would show here
        errors += 1
        print(repr(exc), file=sys.stderr)
    time.sleep(0.02)
print(json.dumps({"reads": reads, "errors": errors}))
"""


def returnsync(env, *args):
    return subprocess.run(
        [str(Path(sys.executable).with_name("returnsync")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def published_at(path: Path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select published_at from published").fetchone()[0]
    finally:
        con.close()


@pytest.mark.slow
def test_reader_holds_published_marts_while_run_rebuilds(tmp_path, dbt_manifest):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETURNSYNC_", "DAGSTER_"))}
    env["RETURNSYNC_DATA_DIR"] = str(tmp_path / "data")
    (tmp_path / "data" / "landing").mkdir(parents=True)
    analyst = tmp_path / "data" / "analyst.duckdb"

    first = returnsync(env, "run", "--quiet", "--as-of", "2026-11-01T00:00:00Z")
    assert first.returncode == 0, first.stdout + first.stderr
    before = published_at(analyst)
    old_inode = analyst.stat().st_ino

    stop = tmp_path / "stop"
    marker = tmp_path / "stages"  # the run writes "<stage> <pid>" as each stage starts
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(analyst), str(stop), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        env_marked = {**env, "RETURNSYNC_STAGE_MARKER": str(marker)}
        second = returnsync(env_marked, "run", "--quiet", "--as-of", "2026-11-02T00:00:00Z")
        time.sleep(0.5)  # a few reads after the swap
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    result = json.loads(out)
    assert result["errors"] == 0, err
    reads = result["reads"]
    new_inode = analyst.stat().st_ino
    assert new_inode != old_inode  # the published file was replaced, not written in place
    # the swap overlapped the reader: it read the old file while the run was publishing, and
    # went on reading it, without an error, after the path already named the new file
    during = [r for r in reads if r[0] == old_inode and r[2]]
    after = [r for r in reads if r[0] == new_inode]
    assert during, f"no read while the run was publishing ({len(reads)} reads)"
    assert after, f"no read after the swap ({len(reads)} reads)"
    assert {seen for _, seen, _ in reads} == {str(before)}  # the held connection: old version
    # a fresh connection afterwards sees the new version
    assert published_at(analyst) > before
    con = duckdb.connect(str(analyst), read_only=True)
    as_of = con.execute("select as_of from published").fetchone()[0]
    con.close()
    assert as_of.startswith("2026-11-02")
