"""Run the code location's jobs in this process (the CLI's `run`; tests).

Kept apart from `definitions.py`, which only builds the `Definitions`: this module prepares the
dbt manifest first (the dbt assets read it on import), then loads the code location.

Logging: the whole Dagster log of a run (every event, with stack traces) goes to a file under
`<data dir>/logs/`; standard error gets one short line per event of level INFO and above (none
with `quiet`), never a stack trace. A failed run is summed up by `RunOutcome.failure`: one line
naming the step that failed and why, and the log file (DESIGN §12).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from pipelines.dbt import in_process, prepare_manifest
from pipelines.errors import EXIT_FAILED, JobFailed, ReturnsyncError
from pipelines.settings import Settings

MAIN_JOB = "main_job"
LOGGER = "returnsync"
LOGS_KEPT = 20  # run logs kept under <data dir>/logs (the oldest are removed)
LINE_CHARS = 240  # a log line on standard error is cut here


def load_definitions(settings: Settings | None = None) -> dg.Definitions:
    prepare_manifest(settings)
    return importlib.import_module("pipelines.definitions").defs


def run_config(
    settings: Settings,
    as_of: str | None,
    quiet: bool = False,
    log_file: Path | None = None,
    with_dbt: bool = True,  # False for jobs without the dbt assets (`ingest_job`)
) -> dict:
    config: dict = {
        "resources": {
            "settings": {
                "config": {
                    "data_dir": str(settings.data_dir),
                    "db_path": str(settings.db_path),
                    "landing_dir": str(settings.landing_dir),
                    "analyst_db_path": str(settings.analyst_db_path),
                    "kafka_bootstrap": settings.kafka_bootstrap,
                }
            }
        },
    }
    if with_dbt:
        config["ops"] = {"returnsync_dbt_assets": {"config": {"as_of": as_of}}}
    logger: dict = {"echo": not quiet}
    if log_file is not None:
        logger["log_file"] = str(log_file)
    config["loggers"] = {LOGGER: {"config": logger}}
    return config


class _OneLine(logging.Formatter):
    """`HH:MM:SS step - message`: the first line of the message only, cut at LINE_CHARS."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        message = str(meta.get("orig_message") or record.getMessage())
        lines = message.strip().splitlines()
        text = lines[0] if lines else ""
        event = meta.get("dagster_event")
        if event is not None and not meta.get("orig_message"):
            text = f"{event.event_type_value}: {text}"
        step = meta.get("step_key")
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        line = f"{when} {record.levelname.lower()} {step + ' - ' if step else ''}{text}"
        return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 3] + "..."


class _BelowError(logging.Filter):
    """Errors are summed up by the CLI in one line; on standard error only the progress."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, is_required=False, default_value="INFO"),
        "echo": dg.Field(bool, is_required=False, default_value=True),
        "log_file": dg.Field(str, is_required=False),
    },
    description="One short line per event on standard error; the full log in a file.",
)
def returnsync_logger(init_context) -> logging.Logger:
    config = init_context.logger_config
    logger = logging.Logger(LOGGER, level=logging.DEBUG)
    if config.get("echo", True):
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(config.get("log_level", "INFO").upper())
        handler.setFormatter(_OneLine())
        handler.addFilter(_BelowError())
        logger.addHandler(handler)
    if config.get("log_file"):
        handler = logging.FileHandler(config["log_file"], encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
        logger.addHandler(handler)
    return logger


def main_job(defs: dg.Definitions) -> dg.JobDefinition:
    """The code location's `main_job` (sensors/recon.py): every asset, in order."""
    return defs.resolve_job_def(MAIN_JOB)


DAGSTER_HOME_DIR = ".dagster_home"  # the instance `make dev` reads (Makefile: DAGSTER_HOME)
# What the Makefile writes, too: no telemetry; no "Join the Dagster community" dialog in the UI;
# no compute-log capture (it tails each step's output through child processes that print a
# KeyboardInterrupt traceback on Ctrl-C; the CLI keeps the whole log under <data dir>/logs and
# the UI shows every run's events either way).
DAGSTER_YAML = (
    "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
    "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n"
    "  class: NoOpComputeLogManager\n"
)


def dagster_home(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the CLI's runs are recorded: DAGSTER_HOME when set, else `.dagster_home` in the
    directory that holds the data directory.

    With the defaults that is `<current directory>/.dagster_home` beside `data/`: exactly the
    instance `make dev` reads (the Makefile exports DAGSTER_HOME=$(CURDIR)/.dagster_home), so a
    `returnsync run` shows in the UI. A data directory elsewhere (RETURNSYNC_DATA_DIR) keeps its
    runs beside it, never in someone else's instance (tests write no run into the checkout).
    """
    env = os.environ if env is None else env
    home = env.get("DAGSTER_HOME")
    if home:
        return Path(home).expanduser().resolve()
    settings = settings or Settings.from_env(env=env)
    return settings.data_dir.parent / DAGSTER_HOME_DIR


# The event log of a new instance: Dagster's SQLite event log files, written by
# `pipelines.eventlog` (one engine per database, WAL with synchronous=NORMAL, one transaction per
# event and per batch: a fraction of the default's cost per event; bench/eventlog.py).
EVENT_LOG_YAML = (
    "event_log_storage:\n  module: pipelines.eventlog\n  class: ReturnsyncEventLogStorage\n"
    "  config:\n    base_dir: {base_dir}\n"
)


def dagster_yaml(home: Path) -> str:
    """The `dagster.yaml` of a new instance in `home` (the Makefile's rule writes the same)."""
    base_dir = json.dumps(str(Path(home).resolve() / "history" / "runs"))  # a YAML string
    return DAGSTER_YAML + EVENT_LOG_YAML.format(base_dir=base_dir)


def instance(settings: Settings | None = None) -> dg.DagsterInstance:
    """The persistent instance in `dagster_home(settings)`, created (telemetry off, returnsync's
    event log storage) if missing. An existing `dagster.yaml` is used as it is, never rewritten:
    one written by an older returnsync or by hand keeps Dagster's default event log
    (`uses_default_event_log` says so; `returnsync watch` prints it)."""
    home = dagster_home(settings)
    config = home / "dagster.yaml"
    if not config.exists():
        home.mkdir(parents=True, exist_ok=True)
        config.write_text(dagster_yaml(home))
    return dg.DagsterInstance.from_config(str(home))


def uses_default_event_log(inst: dg.DagsterInstance) -> bool:
    """Whether the instance stores events with Dagster's own SQLite event log storage (a
    `dagster.yaml` written before returnsync had its own, or without it)."""
    from dagster._core.storage.event_log import SqliteEventLogStorage

    from pipelines.eventlog import ReturnsyncEventLogStorage

    storage = inst.event_log_storage
    return isinstance(storage, SqliteEventLogStorage) and not isinstance(
        storage, ReturnsyncEventLogStorage
    )


@dataclass(frozen=True)
class RunOutcome:
    """How a run went; truthy when it succeeded."""

    success: bool
    run_id: str
    log_file: Path | None = None
    failure: str | None = None  # one line: the step that failed and why
    exit_code: int = 0  # the CLI's exit code for the failure (DESIGN §12)
    # paths in the landing folders that were not read (symbolic links, directories, FIFOs,
    # unreadable files: DESIGN §12), as (path, reason), from the landing assets' metadata
    not_read: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.success

    def error(self) -> ReturnsyncError:
        """The failure as the error the CLI shows (its class carries the exit code)."""
        error = JobFailed(self.failure or "the main job failed")
        error.exit_code = self.exit_code or EXIT_FAILED
        return error


def new_log_file(settings: Settings, run_id: str) -> Path:
    """`<data dir>/logs/run-<UTC time>-<run id>.log`; only the newest LOGS_KEPT are kept."""
    folder = settings.data_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.glob("run-*.log"))[: -(LOGS_KEPT - 1) or None]:
        old.unlink(missing_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return folder / f"run-{stamp}-{run_id[:8]}.log"


def run_main_job(
    settings: Settings,
    as_of: str | None = None,
    quiet: bool = False,
    log_file: Path | None = None,
    run_id: str | None = None,
    job_name: str = MAIN_JOB,  # or another job of the code location (`ingest_job`: landing only)
) -> RunOutcome:
    defs = load_definitions(settings)
    job = defs.resolve_job_def(job_name).with_logger_defs({LOGGER: returnsync_logger})
    with contextlib.ExitStack() as stack:
        if job_name == MAIN_JOB:  # dbt builds in this process (pipelines.dbt.in_process)
            stack.enter_context(in_process(settings))
        inst = stack.enter_context(instance(settings))
        result = job.execute_in_process(
            run_config=run_config(settings, as_of, quiet, log_file, job_name == MAIN_JOB),
            instance=inst,
            raise_on_error=False,
            run_id=run_id,
        )
    if result.success:
        return RunOutcome(True, result.run_id, log_file, not_read=paths_not_read(result))
    failure, code = describe_failure(result)
    where = f" (full log: {log_file})" if log_file else ""
    return RunOutcome(False, result.run_id, log_file, failure + where, code)


NOT_READ_METADATA = ("skipped_paths", "files_ignored")  # assets/files.py, assets/cdc.py


def paths_not_read(result) -> list[tuple[str, str]]:
    """(path, reason) of every landing path the run did not read, once each, sorted."""
    found: dict[str, str] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.event_specific_data.materialization.metadata
        for key in NOT_READ_METADATA:
            value = metadata.get(key)
            for item in getattr(value, "data", None) or []:
                found[str(item["path"])] = str(item["reason"])
    return sorted(found.items())


def _exit_codes() -> dict[str, int]:
    """Error class name -> exit code, for every `ReturnsyncError` (and subclass) there is."""
    codes: dict[str, int] = {}
    pending = [ReturnsyncError]
    while pending:
        cls = pending.pop()
        codes[cls.__name__] = cls.exit_code
        pending.extend(cls.__subclasses__())
    return codes


def _user_error(error):
    """The user's exception inside Dagster's wrappers (DagsterExecutionStepExecutionError...)."""
    while error.cause is not None and (
        error.cls_name.startswith("Dagster") or error.cls_name == "Failure"
    ):
        error = error.cause
    return error


_QUALIFIED = re.compile(r"^(?:[A-Za-z_][\w]*\.)+(?P<name>[A-Za-z_]\w*): ")


def _error_line(error, codes: dict[str, int]) -> str:
    """`Type: first line of the message`; a returnsync error's message alone (it is for users)."""
    text = (error.message or "").strip()
    first = _QUALIFIED.sub(r"\g<name>: ", text.splitlines()[0] if text else "")
    name = error.cls_name or ""
    if first.startswith(f"{name}: "):
        first = first[len(name) + 2 :]
    if name in codes or not name:
        return first or name or "unknown error"
    return f"{name}: {first}" if first else name


def describe_failure(result) -> tuple[str, int]:
    """One line naming the first failed step and its error, and the exit code for it."""
    codes = _exit_codes()
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            if error is None:
                return f"step {event.step_key} failed", EXIT_FAILED
            user = _user_error(error)
            return (
                f"step {event.step_key} failed: {_error_line(user, codes)}",
                codes.get(user.cls_name, EXIT_FAILED),
            )
    for event in result.all_events:
        if event.is_run_failure and event.message:
            return f"the main job failed: {event.message.strip().splitlines()[0]}", EXIT_FAILED
    return "the main job failed", EXIT_FAILED
