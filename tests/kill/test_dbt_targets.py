"""Per-run dbt target folders (DESIGN §12): a build's folder goes when it succeeds; folders of
failed or killed builds are pruned but for the newest few; nothing else under target/ is touched.

(That a successful run leaves no folder of its own is checked on a real run in
test_kill_campaign.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipelines.dbt as dbt

HOUR = 3600


@pytest.fixture
def target(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "target"
    folder.mkdir()
    monkeypatch.setattr(dbt, "targets_dir", lambda: folder)
    return folder


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _folder(target: Path, name: str, age_s: float, now: float) -> Path:
    folder = target / name
    (folder / "compiled").mkdir(parents=True)
    (folder / "dbt.log").write_text("log\n")
    for path in (folder / "dbt.log", folder):
        os.utime(path, (now - age_s, now - age_s))
    return folder


def test_prune_keeps_live_builds_and_the_newest_failed_ones(target):
    now = time.time()
    live_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        mine = _folder(target, f"returnsync_dbt_assets-aaaaaaaa-pid{os.getpid()}", 5 * HOUR, now)
        other_live = _folder(
            target, f"returnsync_dbt_assets-bbbbbbbb-pid{live_child.pid}", 5 * HOUR, now
        )
        failed = [
            _folder(target, f"returnsync_dbt_assets-{i:08d}-pid{dead}", age, now)
            for i, age in enumerate((10, 20, 30, 40))
        ]
        legacy_recent = _folder(target, "returnsync_dbt_assets-74ccd7d-5be7395", 60, now)
        legacy_old = _folder(target, "returnsync_dbt_assets-c00dcf3-3f60b13", 2 * HOUR, now)
        keep_files = ["manifest.json", "partial_parse.msgpack", "returnsync_dbt_assets-a-file"]
        for name in keep_files:
            (target / name).write_text("{}")
        (target / "compiled").mkdir()
        outside = target.parent / "outside"
        outside.mkdir()
        (outside / "precious").write_text("x")
        (target / f"returnsync_dbt_assets-link-pid{dead}").symlink_to(outside)

        removed = dbt.prune_run_targets(keep=2, now=now)
    finally:
        live_child.kill()
        live_child.wait()

    assert sorted(removed) == sorted([failed[2], failed[3], legacy_old])
    left = {p.name for p in target.iterdir()}
    assert left == {
        mine.name,
        other_live.name,
        failed[0].name,
        failed[1].name,
        legacy_recent.name,
        *keep_files,
        "compiled",
        f"returnsync_dbt_assets-link-pid{dead}",
    }
    assert (outside / "precious").exists()


def test_run_target_path_names_the_run_and_this_process(target):
    path = dbt.run_target_path("0123456789abcdef")
    assert path == target / f"returnsync_dbt_assets-01234567-pid{os.getpid()}"
    assert dbt._owner_alive(path) is True


def test_remove_run_target_removes_only_a_run_folder(target, tmp_path):
    run = target / "returnsync_dbt_assets-01234567-pid1"
    (run / "compiled").mkdir(parents=True)
    elsewhere = tmp_path / "returnsync_dbt_assets-01234567-pid2"
    elsewhere.mkdir()
    (target / "compiled").mkdir()
    dbt.remove_run_target(run)
    dbt.remove_run_target(elsewhere)
    dbt.remove_run_target(target / "compiled")
    assert not run.exists() and elsewhere.exists() and (target / "compiled").exists()
