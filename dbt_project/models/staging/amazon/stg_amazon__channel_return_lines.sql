{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Amazon return lines in the shape of int_channel_return_lines_unioned: one per (Amazon RMA ID,
-- Merchant SKU), the unit price from the order's amount and quantity, the reason through the
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
    'amazon' as channel,
    'amazon' as source_system,
    rows_.rma_normalized,
    rows_.channel_sku,
    cast(null as varchar) as channel_line_id,
    rows_.quantity as qty_requested,
    cast(
        case when rows_.order_quantity > 0 then rows_.order_amount / rows_.order_quantity end
        as decimal(18, 4)
    ) as unit_price,
    rows_.currency,
    rows_.return_reason as reason_raw,
    reasons.reason as mapped_reason,
    rows_.refunded_amount as refund_amount,
    rows_.amazon_rma_id || ':' || rows_.channel_sku as source_record_id,
    rows_.source_position,
    rows_.source_changed_at
from {{ ref('stg_amazon__returns') }} as rows_
left join reasons
    on reasons.source_system = 'amazon' and reasons.source_reason = upper(rows_.return_reason)
where rows_.rma_normalized is not null and {{ in_touched('rows_.rma_normalized', 'rma', full) }}
