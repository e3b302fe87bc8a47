{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- B2B credit request lines in the shape of int_channel_return_lines_unioned: the reason code
-- through the reason_map seed; a request carries no refund amount. The columns and their types are
-- CHANNEL_UNIONS['return_lines'] of pipelines/lib/contracts.py (a dbt contract:
-- _channel_models.yml).
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns' RMAs are
-- recomputed from their staging rows, scoped before any grouping; a row without a normalized RMA
-- belongs to no return (the union never read one) and is left out.
with reasons as (
    select source_system, upper(trim(source_reason)) as source_reason, reason
    from {{ ref('reason_map') }}
)

select
    'b2b' as channel,
    'b2b' as source_system,
    rows_.rma_normalized,
    rows_.channel_sku,
    cast(null as varchar) as channel_line_id,
    rows_.quantity as qty_requested,
    rows_.unit_price,
    rows_.currency,
    rows_.reason_code as reason_raw,
    reasons.reason as mapped_reason,
    cast(null as decimal(18, 4)) as refund_amount,
    rows_.request_id || ':' || rows_.channel_sku as source_record_id,
    rows_.source_position,
    rows_.source_changed_at
from {{ ref('stg_b2b__credit_requests') }} as rows_
left join reasons
    on reasons.source_system = 'b2b' and reasons.source_reason = upper(rows_.reason_code)
where rows_.rma_normalized is not null and {{ in_touched('rows_.rma_normalized', 'rma', full) }}
