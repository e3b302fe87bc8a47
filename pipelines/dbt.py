"""The dbt project as Dagster sees it: paths, the CLI resource, and manifest preparation.

`@dbt_assets` reads `target/manifest.json` when `assets/dbt.py` is imported, so the manifest must
exist first: `prepare_manifest()` (called by `returnsync prepare`, the CLI's `run`, the Makefile
and the test suite's conftest) parses the project when the manifest is missing or older than
any file of the project. The manifest is never committed.

Every dbt process is started through `returnsync-dbt` (`pipelines/dbt_child.py`), which makes it
die with the process that started it: killing a run leaves no dbt holding the warehouse. Each
dbt build of a run writes its artifacts to its own folder
`target/returnsync_dbt_assets-<run>-pid<pid>` (`run_target_path`), removed when the build
succeeds; `prune_run_targets` removes the folders of earlier builds that failed or were killed,
except the newest few (their `dbt.log` helps debugging). `target/manifest.json` and
`target/partial_parse.msgpack` are never touched.

The run's `as_of` reaches dbt through the run context (`write_run_context`: the table
`recon.run_context`, one row, written right before dbt starts; macros/run_context.sql reads it),
never through `--vars`: a changed var makes dbt re-parse the whole project (3-5 s here), a row
does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import weakref
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from pipelines.dbt_child import PARENT_ENV
from pipelines.lib.processes import is_running
from pipelines.settings import DBT_PROJECT_DIR, Settings

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

_SOURCE_GLOBS = (
    "dbt_project.yml",
    "profiles.yml",
    "models/**/*",
    "seeds/**/*",
    "macros/**/*",
    "tests/**/*",
)


def project_files() -> list[Path]:
    """The dbt project's own files, sorted: what a parse reads (never target/)."""
    root = Path(DBT_PROJECT_DIR)
    return sorted(
        {
            path
            for pattern in _SOURCE_GLOBS
            for path in root.glob(pattern)
            if path.is_file() and "target" not in path.relative_to(root).parts
        }
    )


WRAPPER = "returnsync-dbt"  # [project.scripts] -> pipelines.dbt_child:main

RUN_TARGET_PREFIX = "returnsync_dbt_assets-"  # dagster-dbt's own names start so too
KEEP_FAILED_TARGETS = 2  # newest folders of failed or killed builds kept for their dbt.log
LEGACY_TARGET_AGE_S = 3600  # folders without an owner pid (older code) count as done after this
_OWNER = re.compile(r"-pid(\d+)$")


def dbt_executable() -> str:
    """`returnsync-dbt` beside this Python: dbt that dies with its parent (see module doc).

    Falls back to the plain dbt beside this Python when the wrapper is not installed (an
    environment installed before it existed; `make install` adds it)."""
    wrapper = Path(sys.executable).with_name(WRAPPER)
    if wrapper.exists():
        return str(wrapper)
    return str(Path(sys.executable).with_name("dbt"))


def mark_dbt_parent() -> None:
    """Tell the dbt children this process starts who their parent is (see pipelines.dbt_child).

    Called right before dagster-dbt starts dbt (it passes this process's environment on)."""
    os.environ[PARENT_ENV] = str(os.getpid())


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()
    )


def use_settings(settings: Settings) -> None:
    """Point dbt subprocesses at the resolved warehouse (called when a run starts).

    dagster-dbt's CLI resource passes this process's environment to dbt; profiles.yml reads the
    absolute DuckDB path from RETURNSYNC_DB.
    """
    os.environ.update(settings.dbt_env())
    mark_dbt_parent()


RUN_CONTEXT_TABLE = "recon.run_context"  # macros/run_context.sql


def write_run_context(db_path: Path | str, as_of: str, run_id: str) -> None:
    """Replace the run context dbt reads (`as_of`, ISO-8601) in one short write transaction.

    Written before every dbt build of a run, so a build never sees an earlier run's time; the
    connection is closed before dbt opens the warehouse."""
    from pipelines.lib.warehouse import connection, transaction

    with connection(db_path) as con, transaction(con):
        con.execute("create schema if not exists recon")
        con.execute(
            f"create or replace table {RUN_CONTEXT_TABLE} as select ?::timestamptz as as_of, "
            "?::varchar as run_id, now() as written_at",
            [as_of, run_id],
        )


def manifest_is_stale() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(path.stat().st_mtime > built for path in project_files())


def run_dbt(args: list[str], settings: Settings) -> subprocess.CompletedProcess:
    """Run a dbt command on this project against the resolved warehouse; raises on failure."""
    use_settings(settings)
    result = subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(dbt_project.target_path)],
        capture_output=True, text=True, check=False,
        env={**os.environ, PARENT_ENV: str(os.getpid())},
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"dbt {args[0]} failed:\n{result.stdout[-4000:]}\n{result.stderr}")
    return result


def prepare_manifest(settings: Settings | None = None, force: bool = False) -> Path:
    """`dbt parse` when the manifest is missing or stale; returns its path."""
    if force or manifest_is_stale():
        run_dbt(["parse", "--quiet"], settings or Settings.from_env())
    return dbt_project.manifest_path


# -- per-run target folders ----------------------------------------------------------------------


def targets_dir() -> Path:
    return Path(DBT_PROJECT_DIR) / dbt_project.target_path


def run_target_path(run_id: str) -> Path:
    """This build's artifact folder: the run and the pid of the process that owns it."""
    return targets_dir() / f"{RUN_TARGET_PREFIX}{run_id[:8]}-pid{os.getpid()}"


def _owner_alive(folder: Path) -> bool | None:
    """True/False for a folder named with its owner's pid; None for one without (older code)."""
    match = _OWNER.search(folder.name)
    if not match:
        return None
    pid = int(match.group(1))
    return pid == os.getpid() or is_running(pid)


def _last_change(folder: Path) -> float:
    stamps = [folder.stat().st_mtime]
    for name in ("dbt.log", "run_results.json"):
        with contextlib.suppress(OSError):
            stamps.append((folder / name).stat().st_mtime)
    return max(stamps)


def prune_run_targets(keep: int = KEEP_FAILED_TARGETS, now: float | None = None) -> list[Path]:
    """Remove the per-run folders no live build owns, except the `keep` newest; returns them.

    A folder is owned while the process in its name lives (a concurrent run on another
    warehouse); a folder without a pid in its name counts as done once unchanged for
    LEGACY_TARGET_AGE_S. Nothing else under target/ is touched."""
    now = time.time() if now is None else now
    done: list[tuple[float, Path]] = []
    with contextlib.suppress(FileNotFoundError):
        for folder in targets_dir().iterdir():
            if not folder.name.startswith(RUN_TARGET_PREFIX) or not folder.is_dir():
                continue
            if folder.is_symlink():
                continue
            try:
                alive = _owner_alive(folder)
                changed = _last_change(folder)
            except OSError:
                continue  # removed meanwhile
            if alive or (alive is None and now - changed < LEGACY_TARGET_AGE_S):
                continue
            done.append((changed, folder))
    done.sort(reverse=True)
    removed = []
    for _, folder in done[keep:]:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def remove_run_target(path: Path) -> None:
    """Remove one build's folder (after it succeeded); only ever a per-run folder."""
    path = Path(path)
    if path.name.startswith(RUN_TARGET_PREFIX) and path.parent == targets_dir():
        shutil.rmtree(path, ignore_errors=True)


# -- the warm path: dbt parsed once, run in this process (`returnsync watch`) --------------------


class WarmDbt:
    """dbt in this process with the project parsed once (`dbtRunner(manifest=...)`).

    `returnsync watch` builds one and installs it (`install_warm`); the dbt asset then runs its
    build through it instead of starting `returnsync-dbt`, so an increment pays neither dbt's
    start-up nor a parse. Kill-safety needs no death signal here: dbt is this process, so it dies
    with it, and DuckDB rolls back what a killed build had not committed. Between builds no
    DuckDB connection stays open (`release`): dbt-duckdb closes its database when the last
    handle closes, and `release` drops its environment besides, so `report`, `acknowledge` and
    analysts' readers open the warehouse while the watch waits.

    The project is re-parsed when one of its files changes (`stale`), as `prepare_manifest`
    would for a cold run.

    dbt's unit tests run once per version of the project, not in every build: they test the
    models' SQL on fixed fixture rows (never the warehouse's data), so their result is a function
    of the project's files and of dbt's, dbt-duckdb's and DuckDB's versions
    (`project_fingerprint`). The first build after a parse runs them (`unit_tests_due`) unless
    a build already passed them on the same fingerprint (`UNIT_TESTS_PASSED`, in the project's
    target folder, shared by every process: a cold `returnsync run` after another pays them no
    more than the next watch increment does); later builds exclude them
    (`--exclude-resource-type unit_test`) until a file of the project changes. Data tests and
    the other checks still run in every build.
    """

    def __init__(self, settings: Settings, echo: bool = False) -> None:
        self.settings = settings
        self.echo = echo  # print dbt's info lines on standard output, as the dbt CLI would
        self.parses = 0
        self.manifest = None
        self.parsed_at = 0.0
        self.unit_tested_parse = 0  # the parse whose unit tests passed in a build (0: none yet)
        self.last_unit_tests: int | None = None  # unit tests the last build ran (None: no build)
        self.last_profile = None  # assets.dbt.BuildProfile of the last build
        self.fingerprint = ""  # project_fingerprint() of the files the last parse read
        self.passed_mark = Path(DBT_PROJECT_DIR) / dbt_project.target_path / UNIT_TESTS_PASSED
        self.full_parse = False  # whether the last parse was a full one (no usable saved state)
        self.parse()

    def unit_tests_due(self) -> bool:
        """Whether the next build must run the unit tests: none passed since the last parse,
        in this process or, on the same project fingerprint, in any other."""
        if self.stale():
            self.parse()
        if self.unit_tested_parse == self.parses:
            return False
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(self.passed_mark.read_text())["fingerprint"] == self.fingerprint:
                self.unit_tested_parse = self.parses
                return False
        return True

    def unit_tests_passed(self, parse: int) -> None:
        """A build of parse number `parse` ran the unit tests and succeeded: recorded here and,
        for other processes, in `passed_mark` (written beside, then renamed)."""
        self.unit_tested_parse = parse
        if parse == self.parses:
            partial = self.passed_mark.with_name(f".{self.passed_mark.name}.{os.getpid()}")
            with contextlib.suppress(OSError):
                partial.write_text(json.dumps({"fingerprint": self.fingerprint, "at": time.time()}))
                os.replace(partial, self.passed_mark)

    def _dirs(self, target_path: Path | None = None) -> list[str]:
        target = target_path or (Path(DBT_PROJECT_DIR) / dbt_project.target_path)
        return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", str(target), "--log-path", str(target)]  # fmt: skip

    def parse(self) -> None:
        from dbt.cli.main import dbtRunner

        use_settings(self.settings)
        os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
        started = time.time()
        fingerprint = project_fingerprint()
        state = parse_state_dir(self.settings)
        seed_parse_state(state)
        names: set[str] = set()
        # --no-write-json: the manifest is returned, not rewritten under target/ (where the
        # Dagster code location reads it; `prepare_manifest` writes it when the project changed),
        # so a run never rewrites the file a webserver may be reading. dbt saves its
        # partial-parse state in this warehouse's own folder (`parse_state_dir`).
        result = dbtRunner(callbacks=[lambda m: names.add(m.info.name)]).invoke(
            ["parse", "--quiet", "--no-write-json", *self._dirs(state)]
        )
        if not result.success or result.result is None:
            raise RuntimeError(f"dbt parse failed: {result.exception}")
        self.full_parse = bool(names & FULL_PARSE_EVENTS)
        prune_parse_states(keep=state)
        self.manifest = result.result
        self.parsed_at = started
        self.fingerprint = fingerprint
        self.parses += 1
        self.release()

    def stale(self) -> bool:
        return any(path.stat().st_mtime > self.parsed_at for path in project_files())

    def invoke(self, args: list[str], target_path: Path) -> tuple[bool, list[dict], str | None]:
        """`dbt <args>` in this process on the parsed project: (success, the structured events
        dagster-dbt and the build profile read, as in the CLI's JSON log, the error if dbt
        raised).

        dbt's own logging costs more than some models do: every one of a build's ~6,000 events
        (most are its debug lines: each SQL statement, connection, macro call) is formatted and
        scrubbed of secrets for `dbt.log`, and each was turned into a dict here. So dbt writes
        no log file and no JSON artifacts (the build's folder is removed when it succeeds);
        the events are kept as dbt's messages, only those in `KEPT_EVENTS` (or warnings and
        errors) become dicts, and `dbt.log` is written from all of them when the build fails,
        where someone will read it."""
        from dbt.cli.main import dbtRunner

        if self.stale():
            self.parse()
        use_settings(self.settings)
        messages: list = []

        def keep(message) -> None:
            messages.append(message)
            if self.echo and message.info.level in ("info", "warn", "error") and message.info.msg:
                print(message.info.msg, flush=True)

        runner = dbtRunner(manifest=self.manifest, callbacks=[keep])
        _track_dbt_pools()
        try:
            result = runner.invoke([*args, "--quiet", *QUIET_FLAGS, *self._dirs(target_path)])
        finally:
            _end_dbt_pools()
            self.release()
        error = None if result.exception is None else str(result.exception)
        if not result.success:
            write_dbt_log(messages, Path(target_path) / "dbt.log", error)
        return result.success, kept_events(messages), error

    @staticmethod
    def release() -> None:
        """Close dbt-duckdb's database (it keeps one per process between invocations)."""
        with contextlib.suppress(ImportError):
            from dbt.adapters.duckdb.connections import DuckDBConnectionManager

            with DuckDBConnectionManager._LOCK:
                env = DuckDBConnectionManager._ENV
                if env is not None:
                    with contextlib.suppress(Exception):
                        env.close()
                DuckDBConnectionManager._ENV = None


UNIT_TESTS_PASSED = "returnsync_unit_tests_passed.json"  # WarmDbt.passed_mark

# -- partial-parse state per warehouse -------------------------------------------------------
# dbt keeps one partial-parse state (`partial_parse.msgpack`) in the target folder and throws it
# away when the profile's connection settings differ from the last parse's: profiles.yml holds
# the warehouse's path, so a parse for another warehouse (a test's, the bench's, a second
# deployment's in one checkout) makes the next `returnsync run` on this one parse the whole
# project again (~6 CPU-s against ~2 for a partial parse here). The warm dbt parses with a target
# folder of the warehouse's own (`parse-<hash of dbt's environment>`), where dbt reads and
# writes that warehouse's state; a new one starts from the checkout's shared state (written by
# `prepare_manifest`'s `dbt parse`), which dbt uses when it was parsed for the same profile.
# dbt still checks everything else itself (files, vars, versions).
PARSE_STATE_PREFIX = "parse-"
PARSE_STATE_FILE = "partial_parse.msgpack"  # dbt's name (dbt.constants.PARTIAL_PARSE_FILE_NAME)
PARSE_STATES_KEPT = 16  # warehouses whose state is kept (1.6 MB each here), the newest
# dbt's events of a parse that could not reuse the saved state
FULL_PARSE_EVENTS = frozenset({"UnableToPartialParse", "ParsedFileLoadFailed"})


def parse_state_dir(settings: Settings) -> Path:
    """The folder of this warehouse's partial-parse state (keyed by dbt's environment, which
    profiles.yml reads: the warehouse path among it)."""
    key = json.dumps(sorted(settings.dbt_env().items()))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return targets_dir() / f"{PARSE_STATE_PREFIX}{digest}"


def seed_parse_state(state: Path) -> None:
    """A new warehouse's folder starts with the checkout's shared state (copied beside, then
    renamed): dbt reuses it when it was parsed for the same profile, else parses in full."""
    target = state / PARSE_STATE_FILE
    shared = targets_dir() / PARSE_STATE_FILE
    if target.exists() or not shared.exists():
        return
    state.mkdir(parents=True, exist_ok=True)
    partial = state / f".{PARSE_STATE_FILE}.{os.getpid()}"
    with contextlib.suppress(OSError):
        shutil.copyfile(shared, partial)
        os.replace(partial, target)


def prune_parse_states(keep: Path | None = None, kept: int = PARSE_STATES_KEPT) -> list[Path]:
    """Remove the partial-parse folders of all but the `kept` most recently parsed warehouses
    (and never `keep`); returns them."""
    found: list[tuple[float, Path]] = []
    with contextlib.suppress(FileNotFoundError):
        for folder in targets_dir().iterdir():
            if not folder.name.startswith(PARSE_STATE_PREFIX) or folder.is_symlink():
                continue
            with contextlib.suppress(OSError):
                found.append(
                    (max(folder.stat().st_mtime, _mtime(folder / PARSE_STATE_FILE)), folder)
                )
    found.sort(reverse=True)
    removed = []
    for _, folder in found[kept:]:
        if keep is not None and folder == keep:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


_DBT_POOLS: weakref.WeakSet = weakref.WeakSet()


def _track_dbt_pools() -> None:
    """Remember every thread pool dbt opens in this process (`_end_dbt_pools` ends them).

    An interrupt (Ctrl-C) can leave dbt's pool open when it lands outside dbt's own handler;
    its threads then keep it alive until the interpreter exits, where its finalizer writes to
    a pipe already closed and prints a traceback after the run's one-line error."""
    import dbt.task.runnable as runnable

    base = runnable.DbtThreadPool
    if getattr(base, "_returnsync_tracked", False):
        return

    class TrackedPool(base):
        _returnsync_tracked = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            _DBT_POOLS.add(self)

    runnable.DbtThreadPool = TrackedPool


def _end_dbt_pools() -> None:
    """Terminate the dbt thread pools still open after an invocation (see `_track_dbt_pools`)."""
    for pool in list(_DBT_POOLS):
        with contextlib.suppress(Exception):
            pool.terminate()
        _DBT_POOLS.discard(pool)


def project_fingerprint() -> str:
    """sha256 of the dbt project's files (what `stale` watches) and of the versions of dbt,
    dbt-duckdb and DuckDB: what decides the unit tests' result."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for package in ("dbt-core", "dbt-duckdb", "duckdb"):
        digest.update(f"{package}=={version(package)}\n".encode())
    root = Path(DBT_PROJECT_DIR)
    for path in project_files():
        digest.update(f"{path.relative_to(root)}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# The dbt events a warm build's caller reads: dagster-dbt's result events (materializations,
# check results) and `NodeFinished` (assets.dbt.build_profile). Warnings and errors are kept too.
KEPT_EVENTS = frozenset(
    {"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult", "NodeFinished"}
)
# No dbt.log (`write_dbt_log` writes one when a build fails) and no manifest.json or
# run_results.json in a folder that is removed when the build succeeds.
QUIET_FLAGS = ("--log-level-file", "none", "--no-write-json")


def kept_events(messages: list) -> list[dict]:
    """The `KEPT_EVENTS`, warnings and errors of dbt's messages, as dicts of its JSON log."""
    from dbt_common.events.functions import msg_to_dict

    return [
        msg_to_dict(m)
        for m in messages
        if m.info.name in KEPT_EVENTS or m.info.level in ("warn", "error")
    ]


def write_dbt_log(messages: list, path: Path, error: str | None = None) -> Path:
    """A failed warm build's `dbt.log`: every event dbt fired, debug lines included, one a line
    as dbt's text log has them (time, level, thread, message), then the error dbt raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as log:
        for m in messages:
            stamp = m.info.ts.ToDatetime().strftime("%H:%M:%S.%f")
            log.write(f"{stamp} [{m.info.level:<5}] [{m.info.thread}]: {m.info.msg}\n")
        if error:
            log.write(f"error: {error}\n")
    return path


_WARM: WarmDbt | None = None


def install_warm(warm: WarmDbt | None) -> None:
    """Make the dbt asset build through `warm` in this process (None: back to `returnsync-dbt`)."""
    global _WARM
    _WARM = warm


def warm_dbt() -> WarmDbt | None:
    return _WARM


@contextlib.contextmanager
def in_process(settings: Settings, echo: bool = True):
    """dbt in this process for the length of one run (`returnsync run`), unless a warm dbt is
    installed already (`returnsync watch`); uninstalled afterwards.

    A `dbt` child costs a cold run its own start: importing dbt and its adapter, loading the
    manifest, and dagster-dbt reading back every line of its JSON log (~10 CPU-s of a
    10,000-return run). In this process the build is the warm path's: the same selection and
    Dagster events, dbt's info lines on standard output (`echo`), a dbt.log only when it
    fails. Kill-safety holds as for the watch: dbt is this process and dies with it."""
    if _WARM is not None:
        yield _WARM
        return
    warm = WarmDbt(settings, echo=echo)
    install_warm(warm)
    try:
        yield warm
    finally:
        install_warm(None)
