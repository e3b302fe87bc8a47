{%- set full = returns_incremental(key='return_key', kind='return') %}

-- The return thread's spine (DESIGN §4): each channel return joined with the ERP return order
-- that carries its RMA in `reference`, compared on letters and digits only, case-insensitively.
-- `erp_link_rule` records how: `rma_exact` (same text) or `rma_normalized`. ERP return orders no
-- channel return names are returns of their own (channel null). When several ERP return orders
-- carry one RMA, the live one (not cancelled) with the lowest id represents it.
with channel as (
    select * from {{ ref('int_channel_returns_unioned') }}
    where {{ in_touched('rma_normalized', 'rma', full) }}
),

erp as (
    select *
    from {{ ref('int_return_orders_joined') }}
    where rma_normalized is not null and {{ in_touched('rma_normalized', 'rma', full) }}
    qualify row_number() over (
        partition by rma_normalized order by (state = 'cancelled'), sale_id
    ) = 1
)

select
    {{ surrogate_key('return', ['coalesce(channel.rma_normalized, erp.rma_normalized)']) }}
        as return_key,
    coalesce(channel.rma_number, erp.rma_number) as rma_number,
    coalesce(channel.rma_normalized, erp.rma_normalized) as rma_normalized,
    channel.channel,
    channel.channel_return_id,
    channel.channel_status,
    coalesce(
        channel.base_status, case when erp.state = 'cancelled' then 'cancelled' else 'approved' end
    ) as base_status,
    coalesce(channel.requested_at, {{ utc('erp.sale_date') }}, erp.created_at) as requested_at,
    channel.approved_at,
    channel.closed_at,
    coalesce(channel.currency, erp.currency_code) as currency,
    coalesce(channel.outcome, 'refund') as outcome,
    channel.tracking_number,
    channel.tracking_normalized,
    coalesce(channel.order_ref, erp.order_ref) as order_ref,
    channel.shopify_order_id,
    erp.sale_id as erp_return_order_id,
    erp.sale_number as erp_return_order_number,
    erp.rma_number as erp_reference,
    erp.state as erp_state,
    erp.warehouse_code as erp_warehouse_code,
    case
        when erp.sale_id is null or channel.rma_number is null then null
        when channel.rma_number = erp.rma_number then 'rma_exact'
        else 'rma_normalized'
    end as erp_link_rule,
    coalesce(channel.source_system, 'erp') as source_system,
    coalesce(channel.channel_return_id, cast(erp.sale_id as varchar)) as source_record_id,
    coalesce(channel.source_position, erp.source_position) as source_position,
    coalesce(channel.source_changed_at, erp.source_changed_at) as source_changed_at
from channel
full outer join erp on erp.rma_normalized = channel.rma_normalized
