"""One settings module, resolved when a run starts (never at import).

Every setting comes from an environment variable with a default that works in embedded mode.
`.env.example` lists them all; `tests/test_settings.py` checks that the two agree.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

# field name -> (environment variable, default; None means unset, "{data_dir}" is substituted)
ENV_VARS: dict[str, tuple[str, str | None]] = {
    "data_dir": ("RETURNSYNC_DATA_DIR", "data"),
    "db_path": ("RETURNSYNC_DB", "{data_dir}/returnsync.duckdb"),
    "landing_dir": ("RETURNSYNC_LANDING", "{data_dir}/landing"),
    "analyst_db_path": ("RETURNSYNC_ANALYST_DB", "{data_dir}/analyst.duckdb"),
    "kafka_bootstrap": ("RETURNSYNC_KAFKA_BOOTSTRAP", None),
    "kafka_group": ("RETURNSYNC_KAFKA_GROUP", "returnsync"),
    "kafka_topic_pattern": ("RETURNSYNC_KAFKA_TOPICS", r"^(erp|wms)\.public\..+"),
    "kafka_max_records": ("RETURNSYNC_KAFKA_MAX_RECORDS", "500000"),
    "erp_url": ("RETURNSYNC_ERP_URL", None),
    "erp_database": ("RETURNSYNC_ERP_DATABASE", None),
    "erp_user": ("RETURNSYNC_ERP_USER", None),
    "erp_password": ("RETURNSYNC_ERP_PASSWORD", None),
    "erp_pull": ("RETURNSYNC_ERP_PULL", "false"),
    "lock_wait_s": ("RETURNSYNC_LOCK_WAIT_S", "120"),
}

AS_OF_MAX_AHEAD = timedelta(days=1)  # `--as-of` may be at most this far in the future


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Paths are absolute; the ERP password is kept out of `repr`."""

    data_dir: Path
    db_path: Path
    landing_dir: Path
    analyst_db_path: Path
    kafka_bootstrap: str | None
    kafka_group: str
    kafka_topic_pattern: str
    kafka_max_records: int
    erp_url: str | None
    erp_database: str | None
    erp_user: str | None
    erp_password: str | None = field(default=None, repr=False)
    erp_pull: bool = False
    lock_wait_s: float = 120.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, base_dir: Path | None = None, **overrides
    ) -> Settings:
        """Resolve settings from `env` (default: `os.environ`); non-None keyword overrides win.

        A value that cannot be used (a number that is not one, an ERP URL that is not an http(s)
        URL) is a `ConfigError` naming the variable, raised before anything is done.
        Relative paths are resolved against `base_dir` (default: the current directory), so the
        DuckDB path handed to dbt is always absolute (STACK_NOTES: dbt resolves relative paths
        against its own working directory).
        """
        env = os.environ if env is None else env
        base = (base_dir or Path.cwd()).resolve()
        raw: dict[str, str | None] = {}
        for name, (var, default) in ENV_VARS.items():
            override = overrides.get(name)
            raw[name] = str(override) if override is not None else (env.get(var) or default)
        data_dir = _abs(raw["data_dir"], base)
        for name in ("db_path", "landing_dir", "analyst_db_path"):
            raw[name] = (raw[name] or "").replace("{data_dir}", str(data_dir))
        try:
            max_records = int(raw["kafka_max_records"] or 0)
        except ValueError:
            raise ConfigError(
                "RETURNSYNC_KAFKA_MAX_RECORDS must be a whole number, "
                f"got {raw['kafka_max_records']!r}"
            ) from None
        if max_records < 0:
            raise ConfigError(
                f"RETURNSYNC_KAFKA_MAX_RECORDS must not be negative, got {max_records}"
            )
        return cls(
            data_dir=data_dir,
            db_path=_abs(raw["db_path"], base),
            landing_dir=_abs(raw["landing_dir"], base),
            analyst_db_path=_abs(raw["analyst_db_path"], base),
            kafka_bootstrap=raw["kafka_bootstrap"] or None,
            kafka_group=raw["kafka_group"] or "returnsync",
            kafka_topic_pattern=raw["kafka_topic_pattern"] or "",
            kafka_max_records=max_records,
            erp_url=check_erp_url(raw["erp_url"]),
            erp_database=raw["erp_database"] or None,
            erp_user=raw["erp_user"] or None,
            erp_password=raw["erp_password"] or None,
            erp_pull=_flag("RETURNSYNC_ERP_PULL", raw["erp_pull"]),
            lock_wait_s=_seconds("RETURNSYNC_LOCK_WAIT_S", raw["lock_wait_s"]),
        )

    @property
    def uses_kafka(self) -> bool:
        return bool(self.kafka_bootstrap)

    def dbt_env(self) -> dict[str, str]:
        """Environment for a dbt subprocess: the absolute DuckDB path, no telemetry, and the rule
        models of the rule catalog (dbt cannot read that seed while it parses)."""
        from pipelines.lib.recon.catalog import dbt_env as rule_catalog_env

        return {
            "RETURNSYNC_DB": str(self.db_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            **rule_catalog_env(),
        }


def _flag(var: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var} must be true or false, got {value!r}")


def _seconds(var: str, value: str | None) -> float:
    try:
        seconds = float((value or "").strip())
    except ValueError:
        raise ConfigError(f"{var} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{var} must be a number of seconds, 0 or more, got {value!r}")
    return seconds


def lock_wait_seconds(env: Mapping[str, str] | None = None) -> float:
    """RETURNSYNC_LOCK_WAIT_S alone (the warehouse reads it on every connect)."""
    env = os.environ if env is None else env
    var, default = ENV_VARS["lock_wait_s"]
    return _seconds(var, env.get(var) or default)


def check_erp_url(value: str | None) -> str | None:
    """The ERP URL if it is an http(s) URL with a host (None when unset), else a `ConfigError`.

    The message never repeats a `user:password@` part of the URL.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # a port that is not a number raises ValueError
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in text):
        shown = re.sub(r"//[^/?#]*@", "//***@", text)  # never show user:password@
        raise ConfigError(
            "RETURNSYNC_ERP_URL must be an http(s) URL such as http://127.0.0.1:8000, "
            f"got {shown!r}"
        )
    return text


def parse_as_of(value: str | None, now: datetime | None = None) -> datetime | None:
    """`--as-of` checked before anything runs: ISO-8601 with or without an offset (UTC if none),
    at most `AS_OF_MAX_AHEAD` after `now`. None stays None (the run uses its start time)."""
    if value is None:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"--as-of {value!r} is not an ISO-8601 time (e.g. 2026-11-01T00:00:00Z)"
        ) from None
    now = now or datetime.now(UTC)
    if parsed > now + AS_OF_MAX_AHEAD:
        raise ConfigError(
            f"--as-of {value!r} is more than a day in the future (now is "
            f"{now.replace(microsecond=0).isoformat()}): a typo?"
        )
    return parsed


def _abs(value: str | None, base: Path) -> Path:
    path = Path(value or ".").expanduser()
    return path if path.is_absolute() else (base / path).resolve()
