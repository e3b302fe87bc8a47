{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Returns SaaS returns (the Shopify channel) in the shape of int_channel_returns_unioned, one row
-- per return: its states on the canonical scale. The columns and their types are
-- CHANNEL_UNIONS['returns'] of pipelines/lib/contracts.py (a dbt contract: _channel_models.yml).
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns' RMAs are
-- recomputed from their staging rows, scoped before any grouping; a row without a normalized RMA
-- belongs to no return (the union never read one) and is left out.
select
    'shopify' as channel,
    'returns_saas' as source_system,
    cast(return_id as varchar) as channel_return_id,
    rma_number,
    rma_normalized,
    state as channel_status,
    case state
        when 'review' then 'requested'
        when 'open' then 'approved'
        when 'closed' then 'closed'
        when 'cancelled' then 'cancelled'
        when 'expired' then 'expired'
        else 'requested'
    end as base_status,
    created_at as requested_at,
    created_at as approved_at,
    case when state in ('closed', 'cancelled', 'expired') then updated_at end as closed_at,
    currency,
    coalesce(outcome, 'refund') as outcome,
    tracking_number,
    tracking_normalized,
    order_name as order_ref,
    order_id as shopify_order_id,
    source_position,
    source_changed_at
from {{ ref('stg_returns_saas__returns') }}
where rma_normalized is not null and {{ in_touched('rma_normalized', 'rma', full) }}
