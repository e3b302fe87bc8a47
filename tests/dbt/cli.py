"""dbt as the dbt tests run it: a subprocess on this project, against one warehouse file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.settings import DBT_PROJECT_DIR


def dbt(db: Path, work: Path, *args: str) -> None:
    """`dbt <args>` on `db`, with target and logs under `work`; asserts success, showing dbt's
    output tail when it fails."""
    env = {**os.environ, "RETURNSYNC_DB": str(db), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    cmd = [
        str(Path(sys.executable).with_name("dbt")),
        args[0],
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
        *args[1:],
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
