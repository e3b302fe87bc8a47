{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Amazon returns in the shape of int_channel_returns_unioned: the report's rows grouped by Amazon
-- RMA ID, the status and resolution of its newest row, the status words mapped to the canonical
-- scale. The columns and their types are CHANNEL_UNIONS['returns'] of pipelines/lib/contracts.py
-- (a dbt contract: _channel_models.yml).
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns' RMAs are
-- recomputed from their staging rows, scoped before any grouping; a row without a normalized RMA
-- belongs to no return (the union never read one) and is left out.
with amazon as (
    select
        amazon_rma_id,
        rma_normalized,
        min(return_request_date) as requested_at,
        arg_max(
            return_request_status,
            {'report_date': report_date, 'delivered': return_delivery_date, 'sku': channel_sku}
        ) as status,
        arg_max(
            resolution,
            {'report_date': report_date, 'delivered': return_delivery_date, 'sku': channel_sku}
        ) as resolution,
        min(currency) as currency,
        min(tracking_number) as tracking_number,
        min(tracking_normalized) as tracking_normalized,
        min(order_id) as order_id,
        max(source_changed_at) as last_changed_at,
        arg_max(
            source_position,
            {'report_date': report_date, 'delivered': return_delivery_date, 'sku': channel_sku}
        ) as source_position
    from {{ ref('stg_amazon__returns') }}
    where rma_normalized is not null and {{ in_touched('rma_normalized', 'rma', full) }}
    group by 1, 2
)

select
    'amazon' as channel,
    'amazon' as source_system,
    amazon_rma_id as channel_return_id,
    amazon_rma_id as rma_number,
    rma_normalized,
    status as channel_status,
    case
        when lower(status) similar to '.*(cancel).*' then 'cancelled'
        when lower(status) similar to '.*(reject|denied|declined).*' then 'rejected'
        when lower(status) similar to '.*(closed|completed|complete).*' then 'closed'
        when lower(status) similar to '.*(approved|authorized|authorised).*' then 'approved'
        else 'requested'
    end as base_status,
    requested_at,
    requested_at as approved_at,
    case
        when lower(status) similar to '.*(cancel|reject|denied|declined|closed|complete).*'
            then last_changed_at
    end as closed_at,
    currency,
    case when lower(resolution) like '%replace%' then 'exchange' else 'refund' end as outcome,
    tracking_number,
    tracking_normalized,
    order_id as order_ref,
    cast(null as bigint) as shopify_order_id,
    source_position,
    last_changed_at as source_changed_at
from amazon
