"""One settings module, resolved when a run starts (never at import).

Every setting comes from an environment variable with a default that works in embedded mode.
`.env.example` lists them all; `tests/test_settings.py` checks that the two agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
}


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

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, base_dir: Path | None = None, **overrides
    ) -> Settings:
        """Resolve settings from `env` (default: `os.environ`); non-None keyword overrides win.

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
        except ValueError as exc:
            raise ValueError(
                "RETURNSYNC_KAFKA_MAX_RECORDS must be a whole number, "
                f"got {raw['kafka_max_records']!r}"
            ) from exc
        return cls(
            data_dir=data_dir,
            db_path=_abs(raw["db_path"], base),
            landing_dir=_abs(raw["landing_dir"], base),
            analyst_db_path=_abs(raw["analyst_db_path"], base),
            kafka_bootstrap=raw["kafka_bootstrap"] or None,
            kafka_group=raw["kafka_group"] or "returnsync",
            kafka_topic_pattern=raw["kafka_topic_pattern"] or "",
            kafka_max_records=max_records,
            erp_url=raw["erp_url"] or None,
            erp_database=raw["erp_database"] or None,
            erp_user=raw["erp_user"] or None,
            erp_password=raw["erp_password"] or None,
            erp_pull=_flag("RETURNSYNC_ERP_PULL", raw["erp_pull"]),
        )

    @property
    def uses_kafka(self) -> bool:
        return bool(self.kafka_bootstrap)

    def dbt_env(self) -> dict[str, str]:
        """Environment for a dbt subprocess: the absolute DuckDB path, no telemetry."""
        return {"RETURNSYNC_DB": str(self.db_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}


def _flag(var: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{var} must be true or false, got {value!r}")


def _abs(value: str | None, base: Path) -> Path:
    path = Path(value or ".").expanduser()
    return path if path.is_absolute() else (base / path).resolve()
