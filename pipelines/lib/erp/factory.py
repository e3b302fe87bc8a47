"""The one place an ERP adapter is built (DESIGN §6): from `Settings`, by the ERP's kind.

Callers (`returnsync push`, the push op, the batch pull, `run`'s settings check) ask
`adapter_from_settings(settings)` and see only the `ErpAdapter` protocol; the adapter is the only
code that knows its ERP. Another ERP is one entry in `ADAPTERS` (docs/extending.md).

The kind comes from `settings.erp_kind` when the settings carry one, else `RETURNSYNC_ERP_KIND`,
else `tryton`. Credentials only ever come from the settings (the environment).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pipelines.lib.erp.base import ErpAdapter, ErpConfigError

KIND_ENV = "RETURNSYNC_ERP_KIND"
DEFAULT_KIND = "tryton"


def _tryton(settings: Any, timeout: float) -> ErpAdapter:
    from pipelines.lib.erp.tryton import TrytonAdapter

    return TrytonAdapter.from_settings(settings, timeout=timeout)


ADAPTERS: dict[str, Callable[[Any, float], ErpAdapter]] = {"tryton": _tryton}


def erp_kind(settings: Any) -> str:
    kind = getattr(settings, "erp_kind", None) or os.environ.get(KIND_ENV) or DEFAULT_KIND
    return str(kind).strip().lower()


def adapter_from_settings(settings: Any, *, timeout: float = 30) -> ErpAdapter:
    """The configured ERP's adapter (`ErpConfigError`, exit 2, when a setting is missing or the
    kind is unknown; nothing is called)."""
    kind = erp_kind(settings)
    build = ADAPTERS.get(kind)
    if build is None:
        raise ErpConfigError(
            f"unknown ERP kind {kind!r} ({KIND_ENV}): one of {', '.join(sorted(ADAPTERS))}"
        )
    return build(settings, timeout)
