{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='refund_id',
        post_hook="{{ delete_childless(ref('stg_shopify__refunds'), 'refund_id', 'refund_line_items') }}",
    )
}}

-- Refund line items of each Shopify refund (one row per refund line item). Incremental
-- (macros/file_staging.sql): the items of the refunds recomputed since the last build replace
-- theirs.
with refunds as (
    select * from {{ ref('stg_shopify__refunds') }}
    where {{ changed_since_last_build() }}
),

items as (
    select
        refunds.refund_id,
        refunds.source_position,
        refunds.source_changed_at,
        refunds._last_ingested_at,
        unnest(refunds.refund_line_items) as item
    from refunds
)

select
    items.item.id as refund_line_item_id,
    items.refund_id,
    items.item.line_item_id,
    cast(items.item.quantity as decimal(12, 3)) as quantity,
    items.item.restock_type,
    items.item.subtotal,
    items.item.total_tax,
    trim(items.item.line_item.sku) as channel_sku,
    items.item.line_item.price as unit_price,
    items.source_position,
    items.source_changed_at,
    items._last_ingested_at
from items
