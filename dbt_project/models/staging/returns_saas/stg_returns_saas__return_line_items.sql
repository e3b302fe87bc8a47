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
    items.return_id,
    items.item.line_item_id,
    items.item.provider_line_item_id,
    trim(items.item.sku) as channel_sku,
    cast(items.item.quantity as decimal(12, 3)) as quantity,
    items.item.price as unit_price,
    items.item.refund as refund_amount,
    nullif(trim(items.item.return_reason), '') as return_reason,
    nullif(trim(items.item.parent_return_reason), '') as parent_return_reason,
    items.rma_number,
    items.rma_normalized,
    items.currency,
    items.source_position,
    items.source_changed_at
from items
