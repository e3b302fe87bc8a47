"""File ingestion (DESIGN §2.4-2.9, §3, §12): returns SaaS webhooks, Shopify refunds, Amazon
returns reports, B2B credit requests and the reference crosswalks, landed into `raw` with a sha256
ledger, dead letters for bad rows and a quarantine for files whose header breaks the contract;
reference files versioned by arrival.

Public API: `land_files`, `pending_files`, `FileLandingSummary`, `QUARANTINE_DIR`,
`current_versions`, `reference_warnings`, `warm_up`.
"""

from pipelines.lib.files.landing import (
    QUARANTINE_DIR,
    FileLandingSummary,
    QuarantinedFile,
    SkippedPath,
    land_files,
    pending_files,
    select_sources,
    sha256_of,
    warm_up,
)
from pipelines.lib.files.reference import (
    DROP_THRESHOLD,
    ReferenceVersion,
    current_versions,
    reference_warnings,
)

__all__ = [
    "DROP_THRESHOLD",
    "QUARANTINE_DIR",
    "FileLandingSummary",
    "QuarantinedFile",
    "ReferenceVersion",
    "SkippedPath",
    "current_versions",
    "land_files",
    "pending_files",
    "reference_warnings",
    "select_sources",
    "sha256_of",
    "warm_up",
]
