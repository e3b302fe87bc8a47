"""Write-back in Dagster (DESIGN §6): planning as an asset, pushing as an op job.

- `writeback/adjustments` plans adjustments from the open mismatches after every reconciliation
  (`recon/mismatches`, reading `recon.adjustment_candidates`): ERP-native fixes (DESIGN §6's
  action vocabulary, pipelines/lib/erp/base.py) with their idempotency keys, approved by
  `auto` under the limits, the rest waiting for `returnsync approve`; mismatches without an
  automatic fix go to the exception queue. While a landing source is stale it plans nothing.
- `push_adjustments_job` sends approved, unsent adjustments to the ERP. It is an op job, not an
  asset, so `main_job` (every asset) never writes to the ERP; `adjustment_push_sensor`
  (sensors/writeback.py) launches it for each new batch.

ERP credentials come only from the environment (Settings); they are never config, log or metadata.
"""

import dagster as dg
from pydantic import Field

from pipelines.lib.stages import mark
from pipelines.resources import SettingsResource

ADJUSTMENTS_KEY = dg.AssetKey(["writeback", "adjustments"])
MISMATCHES_KEY = dg.AssetKey(["recon", "mismatches"])
MD_ROWS = 200  # rows of each Markdown table in the metadata


@dg.asset(
    key=ADJUSTMENTS_KEY,
    deps=[MISMATCHES_KEY],
    group_name="writeback",
    description=(
        "Adjustments planned from the open mismatches and recon.adjustment_candidates (DESIGN "
        "§6): the return's own customer return shipment finished (or a supplementary one) for "
        "receipt_not_posted / posted_qty_mismatch, an internal move for disposition_mismatch, "
        "the return's own draft credit note posted (or a new one) for refund_without_credit and "
        "an ERP-short credit_amount_mismatch, each with an idempotency key; auto-approved under "
        "the limits of the recon_settings seed; everything else in writeback.exceptions."
    ),
)
def adjustments(context: dg.AssetExecutionContext, settings: SettingsResource):
    from pipelines.lib.recon.report import to_markdown
    from pipelines.lib.warehouse import connection
    from pipelines.lib.writeback import plan_adjustments
    from pipelines.lib.writeback.schema import EXCEPTION_COLUMNS, LIST_COLUMNS

    mark("planning")
    resolved = settings.get()
    with connection(resolved.db_path) as con:
        summary = plan_adjustments(con)
        by_status = dict(
            con.execute(
                "select status, count(*) from writeback.adjustments group by status order by 1"
            ).fetchall()
        )
        # the first MD_ROWS of each, as list_adjustments / list_open_exceptions order them:
        # reading every row would cost what the history is, not what changed (issue 24)
        waiting = _first_rows(
            con, LIST_COLUMNS, "writeback.adjustments where status = 'planned'",
            "created_at, adjustment_id",
        )  # fmt: skip
        exceptions = _first_rows(
            con, EXCEPTION_COLUMNS, "writeback.exceptions where status = 'open'",
            "created_at, exception_id",
        )  # fmt: skip
        open_exceptions = con.execute(
            "select count(*) from writeback.exceptions where status = 'open'"
        ).fetchone()[0]
    if summary.skipped_reason:  # a partial run plans and auto-approves nothing (DESIGN §12)
        context.log.warning(f"nothing planned: {summary.skipped_reason}")
    context.log.info(
        f"{summary.planned} adjustment(s) planned ({summary.auto_approved} auto-approved, "
        f"{summary.waiting} waiting for a person), {open_exceptions} open exception(s)"
    )
    return dg.MaterializeResult(
        metadata={
            **summary.as_dict(),
            **({"skipped": summary.skipped_reason} if summary.skipped_reason else {}),
            **{f"status_{k}": int(v) for k, v in by_status.items()},
            "open_exceptions": int(open_exceptions),
            # ids a person approves or rejects (`returnsync approve ID --by NAME`); no personal data
            "waiting_for_approval": dg.MetadataValue.md(
                to_markdown(waiting[:MD_ROWS], LIST_COLUMNS)
            ),
            "exception_queue": dg.MetadataValue.md(
                to_markdown(exceptions[:MD_ROWS], EXCEPTION_COLUMNS)
            ),
        }
    )


def _first_rows(con, columns: tuple[str, ...], source: str, order: str) -> list[dict]:
    cursor = con.execute(
        f"select {', '.join(columns)} from {source} order by {order} limit {MD_ROWS}"
    )
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


class PushConfig(dg.Config):
    """How one push run behaves; the sensor fills `adjustment_ids` with the batch it saw."""

    adjustment_ids: list[str] = Field(default_factory=list)
    max_attempts: int = 4
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0


@dg.op(
    description=(
        "Send approved, unsent adjustments (only `adjustment_ids` when given) to the ERP, each "
        "exactly once; transient errors retried with backoff, refusals to the exception queue."
    )
)
def push_adjustments_op(
    context: dg.OpExecutionContext, config: PushConfig, settings: SettingsResource
) -> dict:
    from pipelines.lib.erp import ErpAuthError, adapter_from_settings
    from pipelines.lib.writeback import RetryPolicy, push_adjustments

    resolved = settings.get()
    try:
        adapter = adapter_from_settings(resolved)
    except ErpAuthError as exc:
        raise dg.Failure(description=str(exc)) from None
    policy = RetryPolicy(
        max_attempts=config.max_attempts,
        backoff_seconds=config.backoff_seconds,
        max_backoff_seconds=config.max_backoff_seconds,
    )

    def progress(adj, result) -> None:
        context.log.info(f"{adj.adjustment_id} {adj.action}: {result.outcome}")

    summary = push_adjustments(
        resolved.db_path,
        adapter,
        policy=policy,
        only=config.adjustment_ids or None,
        secrets=(resolved.erp_password,),
        progress=progress,
    )
    if summary.auth_failed or summary.stopped_reason:
        raise dg.Failure(
            description=f"push stopped: {summary.stopped_reason}",
            metadata={k: v for k, v in summary.as_dict().items() if v is not None},
        )
    context.add_output_metadata({k: v for k, v in summary.as_dict().items() if v is not None})
    return summary.as_dict()


@dg.job(
    name="push_adjustments_job",
    description="Push approved, unsent write-back adjustments to the ERP (launched by a sensor).",
)
def push_adjustments_job():
    push_adjustments_op()


defs = dg.Definitions(assets=[adjustments], jobs=[push_adjustments_job])
