"""The dbt assets' `as_of` is checked like the CLI's `--as-of`, for runs launched from the UI."""

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.errors import ConfigError


def test_as_of_from_run_config_is_checked_and_normalised(dbt_manifest):
    from assets.dbt import resolve_as_of

    assert resolve_as_of("2026-11-01T01:00:00+01:00") == "2026-11-01T00:00:00+00:00"
    assert resolve_as_of("2026-11-01T00:00:00") == "2026-11-01T00:00:00+00:00"  # UTC if none
    now = datetime.fromisoformat(resolve_as_of(None))
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)
    with pytest.raises(ConfigError, match="not an ISO-8601"):
        resolve_as_of("yesterday")
    with pytest.raises(ConfigError, match="more than a day in the future"):
        resolve_as_of((datetime.now(UTC) + timedelta(days=300)).isoformat())
