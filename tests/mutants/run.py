"""`make mutants`: each patch here breaks the behaviour one test guards; that test must fail.

Every `*.patch` starts with `Test: <pytest node id>` and `Breaks: <what>`, then a unified diff
against the product code. For each patch: a scratch copy of the committed tree (`git archive
HEAD`, no `.venv`: the project's `.venv`, `.venv-erp` and `.cache` are linked in, `../shared` is
linked beside it), the patch applied with `git apply`, then the named test run there with the
copy first on PYTHONPATH (its subprocesses import the mutant too). The mutant is killed when the
test fails (pytest exit code 1); it survives when the test passes, and an error of the harness
itself (exit code 2 and above: the patch broke collection, a usage error) counts as not killed.

    python tests/mutants/run.py [NAME ...]     # all patches, or only these (file stems)
    python tests/mutants/run.py --baseline ... # the same tests on the unpatched copy: must pass
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
LINKED = (".venv", ".venv-erp", ".cache")


def header(patch: Path, field: str) -> str:
    for line in patch.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{field}: "):
            return line.split(": ", 1)[1].strip()
    raise SystemExit(f"{patch.name}: no '{field}:' line")


def scratch_copy(root: Path) -> Path:
    copy = root / "main"
    copy.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=PROJECT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive.stdout, check=True)
    for name in LINKED:
        if (PROJECT / name).exists():
            (copy / name).symlink_to(PROJECT / name)
    (root / "shared").symlink_to(PROJECT.parent / "shared")
    return copy


def run_one(patch: Path, root: Path, baseline: bool = False) -> tuple[str, str, float]:
    test = header(patch, "Test")
    copy = scratch_copy(root / patch.stem)
    applied = subprocess.run(
        ["git", "apply", "--check" if baseline else "--verbose", str(patch)],
        cwd=copy, capture_output=True, text=True,
    )  # fmt: skip
    if applied.returncode:
        return "NOT APPLIED", applied.stderr.strip().splitlines()[-1], 0.0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETURNSYNC_", "DAGSTER_"))}
    env["PYTHONPATH"] = str(copy)
    started = time.monotonic()
    result = subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-x",
         "-p", "no:cacheprovider", test],
        cwd=copy, env=env, capture_output=True, text=True,
    )  # fmt: skip
    took = time.monotonic() - started
    last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    if baseline:
        return ("killed" if result.returncode == 0 else "BASELINE FAILS"), last, took
    if result.returncode == 1:
        return "killed", last, took
    if result.returncode == 0:
        return "SURVIVED", last, took
    return f"ERROR (pytest exit {result.returncode})", last, took


def main(names: list[str]) -> int:
    baseline = "--baseline" in names
    names = [n for n in names if n != "--baseline"]
    patches = sorted(HERE.glob("*.patch"))
    if names:
        patches = [p for p in patches if p.stem in names]
        if len(patches) != len(set(names)):
            raise SystemExit(f"unknown mutant(s): {sorted(set(names) - {p.stem for p in patches})}")
    root = Path(tempfile.mkdtemp(prefix="returnsync-mutants-"))
    failed = 0
    try:
        for patch in patches:
            print(f"== {patch.stem}: {header(patch, 'Breaks')}", flush=True)
            outcome, detail, took = run_one(patch, root, baseline)
            if baseline and outcome == "killed":
                outcome = "passes unpatched"
                failed -= 1
            failed += outcome != "killed"
            print(f"   {outcome} in {took:.0f} s by {header(patch, 'Test')}: {detail}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    what = "tests pass unpatched" if baseline else "mutants killed"
    print(f"{len(patches) - failed} of {len(patches)} {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
