{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- B2B credit requests in the shape of int_channel_returns_unioned: one row per request (its lines
-- grouped by request_id). The columns and their types are CHANNEL_UNIONS['returns'] of
-- pipelines/lib/contracts.py (a dbt contract: _channel_models.yml).
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns' RMAs are
-- recomputed from their staging rows, scoped before any grouping; a row without a normalized RMA
-- belongs to no return (the union never read one) and is left out.
with b2b as (
    select
        request_id,
        rma_normalized,
        min(requested_at) as requested_at,
        max(approved_at) as approved_at,
        -- a request is approved when any line is, rejected when all are, submitted otherwise
        case
            when bool_or(status = 'approved') then 'approved'
            when bool_and(status = 'rejected') then 'rejected'
            else 'submitted'
        end as status,
        min(currency) as currency,
        min(po_number) as po_number,
        max(source_changed_at) as last_changed_at,
        min(source_position) as source_position
    from {{ ref('stg_b2b__credit_requests') }}
    where rma_normalized is not null and {{ in_touched('rma_normalized', 'rma', full) }}
    group by 1, 2
)

select
    'b2b' as channel,
    'b2b' as source_system,
    request_id as channel_return_id,
    request_id as rma_number,
    rma_normalized,
    status as channel_status,
    case status
        when 'approved' then 'approved'
        when 'rejected' then 'rejected'
        else 'requested'
    end as base_status,
    requested_at,
    approved_at,
    case when status = 'rejected' then last_changed_at end as closed_at,
    currency,
    'refund' as outcome,
    cast(null as varchar) as tracking_number,
    cast(null as varchar) as tracking_normalized,
    po_number as order_ref,
    cast(null as bigint) as shopify_order_id,
    source_position,
    last_changed_at as source_changed_at
from b2b
