{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='return_id',
        post_hook="{{ delete_childless(ref('stg_returns_saas__returns'), 'return_id', 'line_items') }}",
    )
}}

-- Line items of the current state of each returns SaaS return (one row per line item).
-- Incremental (macros/file_staging.sql): the items of the returns recomputed since the last build
-- replace theirs.
with returns as (
    select * from {{ ref('stg_returns_saas__returns') }}
    where {{ changed_since_last_build() }}
),

items as (
    select
        returns.return_id,
        returns.rma_number,
        returns.rma_normalized,
        returns.currency,
        returns.source_position,
        returns.source_changed_at,
        returns._last_ingested_at,
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
    items.source_changed_at,
    items._last_ingested_at
from items
