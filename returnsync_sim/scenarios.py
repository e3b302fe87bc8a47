"""What the simulator injects: faults (each raises known rules, DESIGN §5) and near misses (each
raises nothing). docs/simulator.md explains every one; the answer key follows from this table."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.lib.recon.catalog import CATALOG

# The rules are the rule catalog's (dbt_project/seeds/rule_catalog.csv): their names, in order,
# and which report a sku in their key (every key shape but `rma`). A scenario below names the
# rules it raises; tests/simulate checks they are all in the catalog.
RULES: tuple[str, ...] = tuple(r.rule for r in CATALOG)
SKU_RULES = frozenset(r.rule for r in CATALOG if r.key_shape != "rma")

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
    # combos only (kind "combo"): the return the faults are laid on ("complete" or a scenario
    # name), the faults as (scenario name, line index) and the key rows as (rule, line index)
    base: str = ""
    overlays: tuple[tuple[str, int], ...] = ()
    keys: tuple[tuple[str, int], ...] = ()

    @property
    def faults(self) -> tuple[str, ...]:
        """The faults this return carries (a near miss is not one)."""
        if self.kind == "fault":
            return (self.name,)
        if self.kind != "combo":
            return ()
        names = [self.base] if BY_NAME.get(self.base, _NONE).kind == "fault" else []
        return (*names, *(name for name, _ in self.overlays))

    @property
    def min_lines(self) -> int:
        return 1 + max((j for _, j in (*self.overlays, *self.keys)), default=0)


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


_NONE = Scenario("", "", (), (), "")


def _combo(
    base: str,
    overlays: tuple[tuple[str, int], ...],
    keys: tuple[tuple[str, int], ...],
    channels: tuple[str, ...],
    summary: str,
) -> Scenario:
    name = "+".join([base, *(f"{f}@{j}" for f, j in overlays)])
    return Scenario(name, "combo", channels, tuple(r for r, _ in keys), summary, False, base,
                    overlays, keys)  # fmt: skip


# Interacting faults on one return (SimOptions.multi_fault_rate; docs/simulator.md "Combos").
# Each lays faults on a base (a complete return placed 60-700 h before as_of, or one of the
# scenarios above, whose timing it keeps) and states the key rows by hand, with the interaction
# that decides them; stock faults need their line to have one receipt and one inspection.
COMBOS: tuple[Scenario, ...] = (
    _combo(
        "complete",
        (("receipt_not_posted", 0), ("posted_qty_over", 1)),
        (("receipt_not_posted", 0), ("posted_qty_mismatch", 1)),
        ALL,
        "two stock faults on two lines: each line raises its own rule",
    ),
    _combo(
        "complete",
        (("wrong_disposition", 0), ("credit_amount_off", 0)),
        (("disposition_mismatch", 0), ("receipt_not_posted", 0), ("credit_amount_mismatch", 0)),
        REFUNDING,
        "a stock fault and a money fault: independent sides of one return",
    ),
    _combo(
        "complete",
        (("credit_currency_wrong", 0), ("credit_amount_off", 0)),
        (("currency_mismatch", 0),),
        REFUNDING,
        "amount off and currency wrong: amounts are not compared across currencies, so "
        "only currency_mismatch",
    ),
    _combo(
        "complete",
        (("duplicate_credit_note", 1), ("credit_currency_wrong", 0)),
        (("duplicate_credit", 1), ("currency_mismatch", 0)),
        REFUNDING,
        "a second credit note in another currency: over-credited line and currency, but no "
        "amount comparison across currencies",
    ),
    _combo(
        "complete",
        (("missing_credit_note", 0), ("posted_qty_over", 0)),
        (("refund_without_credit", 0), ("posted_qty_mismatch", 0)),
        REFUNDING,
        "no credit note and an over-posted line",
    ),
    _combo(
        "complete",
        (("draft_credit_note", 0), ("receipt_not_posted", 1), ("unmapped_sku", 0)),
        (("refund_without_credit", 0), ("receipt_not_posted", 1), ("unmapped_sku", 0)),
        REFUNDING,
        "three faults: draft credit note, an unposted line, an unmapped channel SKU",
    ),
    _combo(
        "complete",
        (("wrong_warehouse", 0), ("duplicate_credit_note_b2b", 1)),
        (("disposition_mismatch", 0), ("receipt_not_posted", 0), ("duplicate_credit", 1)),
        ("b2b",),
        "posted to another warehouse and a line credited twice",
    ),
    _combo(
        "complete",
        (("posted_qty_short", 0), ("wrong_disposition", 1), ("credit_amount_off", 0)),
        (
            ("posted_qty_mismatch", 0),
            ("disposition_mismatch", 1),
            ("receipt_not_posted", 1),
            ("credit_amount_mismatch", 0),
        ),
        REFUNDING,
        "three faults on two lines and the money",
    ),
    _combo(
        "complete",
        (("unmapped_sku", 1), ("credit_currency_wrong", 0)),
        (("unmapped_sku", 1), ("currency_mismatch", 0)),
        REFUNDING,
        "an unmapped second line and a credit in another currency",
    ),
    _combo(
        "complete",
        (("duplicate_refund", 0), ("receipt_not_posted", 1)),
        (("duplicate_credit", 0), ("receipt_not_posted", 1)),
        ("shopify",),
        "a line refunded and credited twice (totals agree) and another line unposted",
    ),
    _combo(
        "complete",
        (("duplicate_credit_note", 0), ("posted_qty_over", 1)),
        (("duplicate_credit", 0), ("credit_amount_mismatch", 0), ("posted_qty_mismatch", 1)),
        REFUNDING,
        "a second credit note (ERP total now exceeds the refund) and an over-post",
    ),
    _combo(
        "complete",
        (("receipt_not_posted", 0), ("duplicate_credit_note_b2b", 0), ("unmapped_sku", 1)),
        (("receipt_not_posted", 0), ("duplicate_credit", 0), ("unmapped_sku", 1)),
        ("b2b",),
        "stock and credit faults on the same line, plus an unmapped line",
    ),
    # on the window and tolerance edges
    _combo(
        "missing_credit_at_boundary",
        (("posted_qty_over", 0),),
        (("refund_without_credit", 0), ("posted_qty_mismatch", 0)),
        ("shopify",),
        "refund exactly credit_grace_h old without credit, and an over-posted line",
    ),
    _combo(
        "nm_credit_grace",
        (("posted_qty_over", 0),),
        (("posted_qty_mismatch", 0),),
        ("shopify",),
        "refund just inside the credit grace (no rule) and an over-posted line",
    ),
    _combo(
        "stale_return_at_boundary",
        (("unmapped_sku", 0),),
        (("stale_return", 0), ("unmapped_sku", 0)),
        ("shopify",),
        "approved exactly stale_return_h ago and an unmapped SKU",
    ),
    _combo(
        "nm_stale_grace",
        (("unmapped_sku", 0),),
        (("unmapped_sku", 0),),
        ("shopify",),
        "approved just inside the stale window (no rule) and an unmapped SKU",
    ),
    _combo(
        "stale_return",
        (("unmapped_sku", 0),),
        (("stale_return", 0), ("unmapped_sku", 0)),
        ALL,
        "stale and unmapped",
    ),
    _combo(
        "nm_amount_at_tolerance",
        (("receipt_not_posted", 1),),
        (("receipt_not_posted", 1),),
        REFUNDING,
        "amounts exactly at the tolerance (no rule) and an unposted line",
    ),
    _combo(
        "nm_amount_at_tolerance",
        (("wrong_disposition", 0),),
        (("disposition_mismatch", 0), ("receipt_not_posted", 0)),
        REFUNDING,
        "amounts exactly at the tolerance (no rule) and a wrong disposition",
    ),
    _combo(
        "credit_without_receipt",
        (("credit_currency_wrong", 0),),
        (("credit_without_receipt", 0), ("currency_mismatch", 0)),
        REFUNDING,
        "credited, never received, and the credit in another currency",
    ),
    _combo(
        "credit_without_receipt",
        (("credit_amount_off", 0),),
        (("credit_without_receipt", 0), ("credit_amount_mismatch", 0)),
        REFUNDING,
        "credited, never received, and the credit amount off",
    ),
    _combo(
        "receipt_not_posted_at_boundary",
        (("unmapped_sku", 0),),
        (("receipt_not_posted", 0), ("unmapped_sku", 0)),
        ALL,
        "inspected exactly posting_grace_h ago, not posted, and its channel SKU unmapped",
    ),
    _combo(
        "nm_posting_grace",
        (("unmapped_sku", 0),),
        (("unmapped_sku", 0),),
        ALL,
        "inspected just inside the posting grace (no rule) and an unmapped SKU",
    ),
    _combo(
        "wrong_disposition_recent",
        (("unmapped_sku", 0),),
        (("disposition_mismatch", 0), ("unmapped_sku", 0)),
        ALL,
        "posted to a wrong disposition within the grace and an unmapped SKU",
    ),
    _combo(
        "nm_cancelled_credit_note",
        (("credit_amount_off", 0),),
        (("credit_amount_mismatch", 0),),
        REFUNDING,
        "a cancelled credit note (counts for nothing) and the posted one's amount off",
    ),
    _combo(
        "nm_split_refund",
        (("receipt_not_posted", 1),),
        (("receipt_not_posted", 1),),
        ("shopify",),
        "a refund split in two (no rule) and an unposted line",
    ),
    _combo(
        "nm_failed_refund_transaction",
        (("posted_qty_over", 0),),
        (("posted_qty_mismatch", 0),),
        ("shopify",),
        "a failed refund transaction (not a refund) and an over-posted line",
    ),
    _combo(
        "nm_mistyped_rma",
        (("receipt_not_posted", 0),),
        (("receipt_not_posted", 0),),
        ALL,
        "mistyped RMA scans (recovered) and an unposted line",
    ),
    _combo(
        "nm_tracking_only",
        (("posted_qty_over", 0),),
        (("posted_qty_mismatch", 0),),
        REFUNDING,
        "receipts linked by tracking number only and an over-posted line",
    ),
    _combo(
        "nm_keep_item",
        (("credit_currency_wrong", 0),),
        (("currency_mismatch", 0),),
        ("shopify",),
        "keep-item (never received, no rule) credited in another currency",
    ),
    _combo(
        "nm_receipt_after_credit_grace",
        (("credit_amount_off", 0),),
        (("credit_amount_mismatch", 0),),
        REFUNDING,
        "credit just inside the receipt-after-credit grace (no rule) and its amount off",
    ),
)
COMBO_BY_NAME = {c.name: c for c in COMBOS}
