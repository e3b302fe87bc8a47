{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Returns SaaS return lines (the Shopify channel) in the shape of
-- int_channel_return_lines_unioned: the line's own reason, else its return's, through the
-- reason_map seed. The columns and their types are CHANNEL_UNIONS['return_lines'] of
-- pipelines/lib/contracts.py (a dbt contract: _channel_models.yml).
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns' RMAs are
-- recomputed from their staging rows, scoped before any grouping; a row without a normalized RMA
-- belongs to no return (the union never read one) and is left out.
with reasons as (
    select source_system, upper(trim(source_reason)) as source_reason, reason
    from {{ ref('reason_map') }}
)

select
    'shopify' as channel,
    'returns_saas' as source_system,
    items.rma_normalized,
    items.channel_sku,
    cast(items.provider_line_item_id as varchar) as channel_line_id,
    items.quantity as qty_requested,
    items.unit_price,
    items.currency,
    coalesce(items.return_reason, items.parent_return_reason) as reason_raw,
    coalesce(r1.reason, r2.reason) as mapped_reason,
    items.refund_amount,
    cast(items.return_id as varchar) || ':' || coalesce(cast(items.line_item_id as varchar), '')
        as source_record_id,
    items.source_position,
    items.source_changed_at
from {{ ref('stg_returns_saas__return_line_items') }} as items
left join reasons as r1
    on r1.source_system = 'returns_saas' and r1.source_reason = upper(items.return_reason)
left join reasons as r2
    on
        r2.source_system = 'returns_saas_parent'
        and r2.source_reason = upper(items.parent_return_reason)
where items.rma_normalized is not null and {{ in_touched('items.rma_normalized', 'rma', full) }}
