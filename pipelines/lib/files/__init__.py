"""File ingestion (DESIGN §2.4-2.9, §3): returns SaaS webhooks, Shopify refunds, Amazon returns
reports, B2B credit requests and the reference crosswalks, landed into `raw` with a sha256 ledger,
dead letters for bad rows and a quarantine for files whose header breaks the contract.

Public API: `land_files`, `pending_files`, `FileLandingSummary`, `QUARANTINE_DIR`.
"""

from pipelines.lib.files.landing import (
    QUARANTINE_DIR,
    FileLandingSummary,
    QuarantinedFile,
    land_files,
    pending_files,
    select_sources,
    sha256_of,
)

__all__ = [
    "QUARANTINE_DIR",
    "FileLandingSummary",
    "QuarantinedFile",
    "land_files",
    "pending_files",
    "select_sources",
    "sha256_of",
]
