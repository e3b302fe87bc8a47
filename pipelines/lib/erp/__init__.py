"""The ERP boundary: adapter interface, the Tryton JSON-RPC adapter, and the batch pull.

Plain Python, no Dagster. Import the pieces from here:

    from pipelines.lib.erp import adapter_from_settings, pull_erp, ErpTransientError, ...
"""

from pipelines.lib.erp.base import (
    ACTIONS,
    CREDIT_ACTIONS,
    DOCUMENT_KINDS,
    FALLBACK,
    LEGACY_ACTIONS,
    MOVE_ACTIONS,
    STOCK_ACTIONS,
    Action,
    CreditLine,
    DocumentKind,
    ErpAdapter,
    ErpAuthError,
    ErpConfigError,
    ErpDocument,
    ErpError,
    ErpPermanentError,
    ErpTransientError,
    document_kind,
    with_retries,
)
from pipelines.lib.erp.factory import ADAPTERS, adapter_from_settings
from pipelines.lib.erp.pull import PULL_MODELS, PULL_SPECS, ModelPull, PullSummary, pull_erp
from pipelines.lib.erp.tryton import TrytonAdapter, TrytonClient

__all__ = [
    "ACTIONS",
    "ADAPTERS",
    "CREDIT_ACTIONS",
    "DOCUMENT_KINDS",
    "FALLBACK",
    "LEGACY_ACTIONS",
    "MOVE_ACTIONS",
    "PULL_MODELS",
    "PULL_SPECS",
    "STOCK_ACTIONS",
    "Action",
    "CreditLine",
    "DocumentKind",
    "ErpAdapter",
    "ErpAuthError",
    "ErpConfigError",
    "ErpDocument",
    "ErpError",
    "ErpPermanentError",
    "ErpTransientError",
    "ModelPull",
    "PullSummary",
    "TrytonAdapter",
    "TrytonClient",
    "adapter_from_settings",
    "document_kind",
    "pull_erp",
    "with_retries",
]
