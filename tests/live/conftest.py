"""The live stack of DESIGN §13 (scripts/stack/stack.py), started once per test session.

`live_stack` starts PostgreSQL, Tryton on it, Kafka and Kafka Connect with Debezium's PostgreSQL
connector in a temporary directory on 127.0.0.1, and stops them at the end. Anything that cannot
start fails the run (never a skip).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = PROJECT_ROOT / "scripts" / "stack"


def stack_module():
    name = "returnsync_stack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, STACK_DIR / "stack.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def loop_module():
    name = "returnsync_stack_loop"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, STACK_DIR / "loop.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory) -> Iterator:
    for tool, package in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")):
        if shutil.which(tool) is None:
            pytest.fail(f"the live stack needs {tool} (apt-get install -y {package})")
    if not (PROJECT_ROOT / ".venv-erp" / "bin" / "trytond").exists():
        pytest.fail("the live stack needs the ERP venv: make erp-install")
    # not under pytest's tmp root (mode 0700): PostgreSQL runs as `postgres` when we are root
    root = Path(tempfile.mkdtemp(prefix="returnsync-stack-"))
    root.chmod(0o755)
    stack = stack_module().Stack(root)
    try:
        stack.up()
    except Exception as exc:  # PostgreSQL, Tryton, Kafka, Connect or Debezium did not start
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"the live stack did not start: {exc}")
    try:
        yield stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
