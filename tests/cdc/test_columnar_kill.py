"""A column-wise CDC ingest killed (SIGKILL) part-way through a file resumes after its last
committed chunk and lands exactly what an uninterrupted ingest lands (issue 23).

The child lands one file of many chunks; after each committed chunk it writes a stage marker
(`cdc_chunk:<file offset>`). The test kills it as soon as a marker shows that some, not all,
chunks committed (the kill lands wherever the child is: decoding the next chunk or inside its
transaction). The second ingest must start at a committed chunk's end, not at the file's start
(it reads fewer lines than the file has), and the warehouse must then equal one landed in one go:
the same raw rows (no duplicates), the same stream and file ledgers (the file's totals counted
once), the same dead letters, and no progress row left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cdc.test_columnar_diff import _state, encoding_cases, write_landing

CHUNK = 16 << 10
CHILD = """
import sys
from pathlib import Path
from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.warehouse import connect
con = connect(sys.argv[1])
s = land_cdc_files(
    con, Path(sys.argv[2]), progress=False, decoder="columnar", chunk_bytes=int(sys.argv[3])
)
print(s.lines_read, sum(s.landed.values()), s.dead_letters)
con.close()
"""


def _child(db: Path, landing: Path, markers: Path) -> subprocess.Popen:
    env = {**os.environ, "RETURNSYNC_STAGE_MARKER": str(markers)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(landing), str(CHUNK)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


def _chunks(markers: Path) -> list[int]:
    if not markers.exists():
        return []
    return [int(line.split()[0].split(":")[1]) for line in markers.read_text().splitlines()
            if line.startswith("cdc_chunk:")]  # fmt: skip


def test_killed_ingest_resumes_from_its_last_committed_chunk(tmp_path):
    cases = encoding_cases()
    lines = [c for _ in range(5) for c in cases]  # repeated positions: duplicates, too
    # distinct positions for most copies, so that the file has many rows to land
    body = []
    for n, line in enumerate(lines):
        text = line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line
        body.append(text.replace('"offset":', f'"offset":{n // len(cases)}0000', 1)
                    if n % 3 else text)  # fmt: skip
    landing = write_landing(
        tmp_path / "landing", [b.encode("utf-8", "surrogateescape") for b in body]
    )
    size = (landing / "cdc" / "a.ndjson").stat().st_size
    assert size > 5 * CHUNK

    expected_db = tmp_path / "once.duckdb"
    once = _child(expected_db, landing, tmp_path / "once.markers")
    out, err = once.communicate(timeout=600)
    assert once.returncode == 0, err[-2000:]
    total_lines = int(out.split()[0])

    db, markers = tmp_path / "killed.duckdb", tmp_path / "killed.markers"
    child = _child(db, landing, markers)
    deadline = time.monotonic() + 600
    while len(_chunks(markers)) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    committed = _chunks(markers)
    assert len(committed) >= 2 and committed[-1] < size, committed  # killed mid-file

    resumed = _child(db, landing, markers)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert 0 < int(out.split()[0]) < total_lines  # it started after a committed chunk

    import duckdb

    states = []
    for path in (expected_db, db):
        con = duckdb.connect(str(path), read_only=True)
        try:
            states.append(_state(con))
            assert con.execute("select count(*) from meta.cdc_file_progress").fetchone()[0] == 0
        finally:
            con.close()
    for name in states[0]:
        assert states[1][name] == states[0][name], f"{name} differs after the resume"
    assert states[0]["files_landed"][0][3] > 0
