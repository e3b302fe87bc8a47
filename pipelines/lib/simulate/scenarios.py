"""What the simulator injects: faults (each raises known rules, DESIGN §5) and near misses (each
raises nothing). docs/simulator.md explains every one; the answer key follows from this table."""

from __future__ import annotations

from dataclasses import dataclass

# rules whose reported key carries a sku (the others report an empty sku)
SKU_RULES = frozenset(
    {
        "receipt_not_posted",
        "posted_qty_mismatch",
        "disposition_mismatch",
        "duplicate_credit",
        "unmatched_receipt",
        "unmapped_sku",
    }
)
RULES = (
    "receipt_not_posted",
    "posted_qty_mismatch",
    "disposition_mismatch",
    "refund_without_credit",
    "credit_amount_mismatch",
    "currency_mismatch",
    "duplicate_credit",
    "credit_without_receipt",
    "unmatched_receipt",
    "stale_return",
    "unmapped_sku",
)
ALL = ("shopify", "amazon", "b2b")
REFUNDING = ("shopify", "amazon")


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # fault | near_miss
    channels: tuple[str, ...]  # channels the affected return can be on
    rules: tuple[str, ...]  # rules it raises (empty for a near miss)
    summary: str
    extra_receipt: bool = False  # adds a WMS receipt next to a clean return (unmatched receipts)


SCENARIOS: tuple[Scenario, ...] = (
    # -- faults --------------------------------------------------------------------------------
    Scenario(
        "receipt_not_posted",
        "fault",
        ALL,
        ("receipt_not_posted",),
        "an inspected line has no stock move; last inspection >= 36 h old",
    ),
    Scenario(
        "receipt_not_posted_at_boundary",
        "fault",
        ALL,
        ("receipt_not_posted",),
        "single-line return, inspected exactly posting_grace_h (24 h) before as_of, no move",
    ),
    Scenario(
        "posted_qty_short",
        "fault",
        ALL,
        ("posted_qty_mismatch",),
        "stock move quantity one less than inspected",
    ),
    Scenario(
        "posted_qty_over",
        "fault",
        ALL,
        ("posted_qty_mismatch",),
        "stock move quantity one more than inspected",
    ),
    Scenario(
        "wrong_disposition",
        "fault",
        ALL,
        ("disposition_mismatch", "receipt_not_posted"),
        "posted to another disposition location of the right warehouse, inspection >= 36 h "
        "old: the wrong location gets disposition_mismatch, the right one receipt_not_posted",
    ),
    Scenario(
        "wrong_warehouse",
        "fault",
        ALL,
        ("disposition_mismatch", "receipt_not_posted"),
        "posted to the same disposition of another warehouse, inspection >= 36 h old",
    ),
    Scenario(
        "wrong_disposition_recent",
        "fault",
        ALL,
        ("disposition_mismatch",),
        "single-line return posted to a wrong disposition, inspected < 14 h ago",
    ),
    Scenario(
        "missing_credit_note",
        "fault",
        REFUNDING,
        ("refund_without_credit",),
        "channel refund >= 60 h old, no ERP credit note",
    ),
    Scenario(
        "draft_credit_note",
        "fault",
        REFUNDING,
        ("refund_without_credit",),
        "channel refund >= 60 h old, the ERP credit note stayed draft",
    ),
    Scenario(
        "missing_credit_at_boundary",
        "fault",
        ("shopify",),
        ("refund_without_credit",),
        "Shopify refund processed exactly credit_grace_h (48 h) before as_of, no credit note",
    ),
    Scenario(
        "credit_amount_off",
        "fault",
        REFUNDING,
        ("credit_amount_mismatch",),
        "ERP credit differs from the channel refund by 0.02 or more",
    ),
    Scenario(
        "credit_currency_wrong",
        "fault",
        REFUNDING,
        ("currency_mismatch",),
        "ERP credit note in another currency than the channel refund",
    ),
    Scenario(
        "duplicate_credit_note_b2b",
        "fault",
        ("b2b",),
        ("duplicate_credit",),
        "a second posted credit note for a B2B line (no channel refund to compare)",
    ),
    Scenario(
        "duplicate_credit_note",
        "fault",
        REFUNDING,
        ("duplicate_credit", "credit_amount_mismatch"),
        "a second posted credit note for a line: over-credited and the ERP total differs",
    ),
    Scenario(
        "duplicate_refund",
        "fault",
        ("shopify",),
        ("duplicate_credit",),
        "Shopify refunds a line twice and the ERP credits it twice (totals agree)",
    ),
    Scenario(
        "credit_without_receipt",
        "fault",
        ALL,
        ("credit_without_receipt",),
        "credited at approval 400-650 h ago, never received (approved < 720 h ago)",
    ),
    Scenario(
        "unmatched_receipt",
        "fault",
        ALL,
        ("unmatched_receipt",),
        "a receipt with a foreign RMA, 30-400 h old",
        extra_receipt=True,
    ),
    Scenario(
        "unmatched_receipt_no_rma",
        "fault",
        ALL,
        ("unmatched_receipt",),
        "a receipt with no RMA and an unknown tracking number",
        extra_receipt=True,
    ),
    Scenario(
        "unmatched_receipt_at_boundary",
        "fault",
        ALL,
        ("unmatched_receipt",),
        "a foreign-RMA receipt exactly unmatched_receipt_grace_h (24 h) old",
        extra_receipt=True,
    ),
    Scenario(
        "stale_return",
        "fault",
        ALL,
        ("stale_return",),
        "approved 800-1500 h ago, nothing received, nothing refunded",
    ),
    Scenario(
        "stale_return_at_boundary",
        "fault",
        ("shopify",),
        ("stale_return",),
        "SaaS return created exactly stale_return_h (720 h) before as_of, nothing received",
    ),
    Scenario(
        "unmapped_sku",
        "fault",
        ALL,
        ("unmapped_sku",),
        "a channel SKU missing from the SKU crosswalk (complete return otherwise)",
    ),
    # -- near misses: each raises nothing --------------------------------------------------------
    Scenario(
        "nm_posting_grace",
        "near_miss",
        ALL,
        (),
        "single-line return inspected 23 h before as_of, not posted yet",
    ),
    Scenario(
        "nm_credit_grace",
        "near_miss",
        ("shopify",),
        (),
        "Shopify refund processed 47 h before as_of, no credit note yet",
    ),
    Scenario(
        "nm_receipt_after_credit_grace",
        "near_miss",
        ALL,
        (),
        "credit note dated the day after as_of - 336 h, nothing received",
    ),
    Scenario(
        "nm_stale_grace",
        "near_miss",
        ("shopify",),
        (),
        "SaaS return created 719 h before as_of, nothing received",
    ),
    Scenario(
        "nm_amount_at_tolerance",
        "near_miss",
        REFUNDING,
        (),
        "ERP credit differs from the channel refund by exactly 0.01",
    ),
    Scenario(
        "nm_unmatched_grace",
        "near_miss",
        ALL,
        (),
        "a foreign-RMA receipt 23 h old",
        extra_receipt=True,
    ),
    Scenario(
        "nm_mistyped_rma",
        "near_miss",
        ALL,
        (),
        "every receipt scanned with a mistyped RMA that normalization recovers",
    ),
    Scenario(
        "nm_tracking_only",
        "near_miss",
        REFUNDING,
        (),
        "receipts without RMA, linked by the return's tracking number",
    ),
    Scenario(
        "nm_keep_item",
        "near_miss",
        ("shopify",),
        (),
        "keep_item refund credited 750+ h ago, nothing received",
    ),
    Scenario(
        "nm_cancelled_old",
        "near_miss",
        ("shopify", "b2b"),
        (),
        "cancelled (SaaS) / rejected (B2B) return 800+ h old, nothing received",
    ),
    Scenario(
        "nm_failed_refund_transaction",
        "near_miss",
        ("shopify",),
        (),
        "Shopify refund whose only transaction failed, no credit note, 60+ h old",
    ),
    Scenario(
        "nm_cancelled_credit_note",
        "near_miss",
        ALL,
        (),
        "an extra cancelled credit note for a line (cancelled documents do not count)",
    ),
    Scenario(
        "nm_split_refund",
        "near_miss",
        ("shopify",),
        (),
        "a line refunded in two Shopify refunds whose quantities add up to authorized",
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}
