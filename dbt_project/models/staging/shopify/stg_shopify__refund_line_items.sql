-- Refund line items of each Shopify refund (one row per refund line item).
with refunds as (
    select * from {{ ref('stg_shopify__refunds') }}
),

items as (
    select
        refunds.refund_id,
        refunds.source_position,
        refunds.source_changed_at,
        unnest(refunds.refund_line_items) as item
    from refunds
)

select
    item.id as refund_line_item_id,
    refund_id,
    item.line_item_id as line_item_id,
    cast(item.quantity as decimal(12, 3)) as quantity,
    item.restock_type as restock_type,
    item.subtotal as subtotal,
    item.total_tax as total_tax,
    trim(item.line_item.sku) as channel_sku,
    item.line_item.price as unit_price,
    source_position,
    source_changed_at
from items
