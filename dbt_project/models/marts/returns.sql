{%- set full = returns_incremental(key='return_key', kind='return') %}

-- One row per return (RMA) across all systems, with its lifecycle status: the channel's terminal
-- state (cancelled, rejected, expired, closed) when it has one, otherwise the furthest step the
-- other systems show (credited, inspected, received, in_transit, approved, requested).
with returns as (
    select * from {{ ref('int_returns_linked') }}
    where {{ in_touched('return_key', 'return', full) }}
),

receipts as (
    select
        return_key,
        min(received_at) as received_at,
        arg_min(warehouse, [epoch(received_at), receipt_id]) as warehouse
    from {{ ref('int_receipts_linked') }}
    where return_key is not null and {{ in_touched('return_key', 'return', full) }}
    group by 1
),

inspections as (
    select distinct return_key
    from {{ ref('int_dispositions_mapped') }}
    where return_key is not null and {{ in_touched('return_key', 'return', full) }}
),

credits as (
    select distinct return_key
    from {{ ref('int_credits_unioned') }}
    where kind <> 'store_credit' and {{ in_touched('return_key', 'return', full) }}
)

select
    cast(returns.return_key as varchar) as return_key,
    cast(returns.rma_number as varchar) as rma_number,
    cast(returns.rma_normalized as varchar) as rma_normalized,
    cast(returns.channel as varchar) as channel,
    cast(returns.channel_return_id as varchar) as channel_return_id,
    cast(returns.erp_return_order_id as bigint) as erp_return_order_id,
    cast(returns.erp_return_order_number as varchar) as erp_return_order_number,
    cast(returns.order_ref as varchar) as order_ref,
    cast(
        case
            when returns.base_status in ('cancelled', 'rejected', 'expired', 'closed')
                then returns.base_status
            when credits.return_key is not null then 'credited'
            when inspections.return_key is not null then 'inspected'
            when receipts.return_key is not null then 'received'
            when returns.tracking_number is not null then 'in_transit'
            else returns.base_status
        end as varchar
    ) as status,
    cast(returns.channel_status as varchar) as channel_status,
    cast(returns.requested_at as timestamp with time zone) as requested_at,
    cast(returns.approved_at as timestamp with time zone) as approved_at,
    cast(receipts.received_at as timestamp with time zone) as received_at,
    cast(returns.closed_at as timestamp with time zone) as closed_at,
    cast(returns.currency as varchar) as currency,
    cast(returns.outcome as varchar) as outcome,
    cast(returns.tracking_number as varchar) as tracking_number,
    cast(coalesce(receipts.warehouse, returns.erp_warehouse_code) as varchar) as warehouse,
    receipts.return_key is not null as is_received,
    cast(returns.source_system as varchar) as source_system,
    cast(returns.source_record_id as varchar) as source_record_id,
    cast(returns.source_position as varchar) as source_position,
    cast(returns.source_changed_at as timestamp with time zone) as source_changed_at
from returns
left join receipts on receipts.return_key = returns.return_key
left join inspections on inspections.return_key = returns.return_key
left join credits on credits.return_key = returns.return_key
