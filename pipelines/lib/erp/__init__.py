"""The ERP boundary: adapter interface, the Tryton JSON-RPC adapter, and the batch pull.

Plain Python, no Dagster. Import the pieces from here:

    from pipelines.lib.erp import TrytonAdapter, pull_erp, ErpTransientError, ...
"""

from pipelines.lib.erp.base import (
    DOCUMENT_KINDS,
    CreditLine,
    DocumentKind,
    ErpAdapter,
    ErpAuthError,
    ErpConfigError,
    ErpDocument,
    ErpError,
    ErpPermanentError,
    ErpTransientError,
    with_retries,
)
from pipelines.lib.erp.pull import PULL_MODELS, PULL_SPECS, ModelPull, PullSummary, pull_erp
from pipelines.lib.erp.tryton import TrytonAdapter, TrytonClient

__all__ = [
    "DOCUMENT_KINDS",
    "PULL_MODELS",
    "PULL_SPECS",
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
    "pull_erp",
    "with_retries",
]
