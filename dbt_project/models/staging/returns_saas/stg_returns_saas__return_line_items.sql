-- Line items of the current state of each returns SaaS return (one row per line item).
with returns as (
    select * from {{ ref('stg_returns_saas__returns') }}
),

items as (
    select
        returns.return_id,
        returns.rma_number,
        returns.rma_normalized,
        returns.currency,
        returns.source_position,
        returns.source_changed_at,
        unnest(returns.line_items) as item
    from returns
)

select
    return_id,
    item.line_item_id as line_item_id,
    item.provider_line_item_id as provider_line_item_id,
    trim(item.sku) as channel_sku,
    cast(item.quantity as decimal(12, 3)) as quantity,
    item.price as unit_price,
    item.refund as refund_amount,
    nullif(trim(item.return_reason), '') as return_reason,
    nullif(trim(item.parent_return_reason), '') as parent_return_reason,
    rma_number,
    rma_normalized,
    currency,
    source_position,
    source_changed_at
from items
