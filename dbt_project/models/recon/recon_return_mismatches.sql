-- Rules stale_return and unmapped_sku (DESIGN §5):
--   stale_return: approved (SaaS created_at, Amazon Return request date, B2B approved_at:
--     marts.returns.approved_at) at least stale_return_h before as_of, nothing received, and
--     not cancelled, rejected or keep-item; one row per return;
--   unmapped_sku: a return line whose channel SKU has no crosswalk entry; one row per
--     (return, channel SKU), reported with the channel SKU.
-- Incremental on the return (macros/recon_incremental.sql): the returns in scope.
{%- set full = recon_incremental() %}
with

run as (
    select * from {{ ref('recon_run') }}
),

stale_return as (
    select
        'stale_return' as rule,
        r.return_key,
        r.rma_number,
        cast(null as varchar) as sku,
        r.warehouse,
        'received' as expected,
        'nothing received' as actual,
        run.as_of
    from {{ ref('returns') }} as r
    cross join run
    where
        r.approved_at is not null
        and {{ in_recon_scope('r.return_key', full) }}
        and r.approved_at + interval 1 hour * run.stale_return_h <= run.as_of
        and not coalesce(r.is_received, false)
        and coalesce(r.status, '') not in ('cancelled', 'rejected')
        and coalesce(r.outcome, '') <> 'keep_item'
),

unmapped_sku as (
    select distinct
        'unmapped_sku' as rule,
        lines.return_key,
        lines.rma_number,
        lines.channel_sku as sku,
        lines.warehouse,
        'crosswalk entry' as expected,
        'none' as actual,
        run.as_of
    from {{ ref('return_lines') }} as lines
    cross join run
    where
        not coalesce(lines.is_sku_mapped, true) and lines.channel_sku is not null
        and {{ in_recon_scope('lines.return_key', full) }}
),

flagged as (
    select * from stale_return
    union all
    select * from unmapped_sku
)

select
    rule,
    rma_number,
    sku,
    warehouse,
    cast(null as varchar) as location,
    expected,
    actual,
    cast(null as decimal(18, 4)) as amount_delta,
    cast(null as decimal(18, 3)) as qty_delta,
    as_of as detected_at,
    return_key
from flagged
