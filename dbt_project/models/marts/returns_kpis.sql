-- Day x channel x warehouse: return volume, refund cycle time, receipt-to-posting latency, the
-- stage latencies of marts.return_stage_latencies (p50/p90 of each transition, closed ones) and
-- the disposition mix. The day is the UTC day the return was requested.
with returns as (
    select
        return_key,
        requested_at,
        coalesce(channel, 'unknown') as channel
    from {{ ref('int_returns_linked') }}
    where requested_at is not null
),

receipts as (
    select
        return_key,
        min(received_at) as received_at,
        sum(quantity) as units_received,
        arg_min(warehouse, [epoch(received_at), receipt_id]) as warehouse
    from {{ ref('int_receipts_linked') }}
    where return_key is not null
    group by return_key
),

erp_warehouse as (
    select return_key, erp_warehouse_code from {{ ref('int_returns_linked') }}
),

first_credit as (
    select return_key, min(issued_at) as credited_at
    from {{ ref('int_credits_unioned') }}
    where return_key is not null and kind <> 'store_credit'
    group by return_key
),

first_posting as (
    select return_key, min(posted_at) as posted_at
    from {{ ref('int_return_stock_moves_joined') }}
    where state = 'done'
    group by return_key
),

stage_latencies as (
    select
        return_key,
        max(latency_h) filter (where transition = 'requested_to_received')
            as requested_to_received_h,
        max(latency_h) filter (where transition = 'received_to_inspected')
            as received_to_inspected_h,
        max(latency_h) filter (where transition = 'inspected_to_posted')
            as inspected_to_posted_h,
        max(latency_h) filter (where transition = 'refunded_to_credited')
            as refunded_to_credited_h,
        count(*) filter (where is_overdue) as overdue_transitions
    from {{ ref('return_stage_latencies') }}
    group by return_key
),

mix as (
    select
        return_key,
        sum(quantity) filter (where disposition = 'restock') as units_restock,
        sum(quantity) filter (where disposition = 'refurbish') as units_refurbish,
        sum(quantity) filter (where disposition = 'scrap') as units_scrap,
        sum(quantity) filter (where disposition = 'return_to_vendor') as units_return_to_vendor
    from {{ ref('int_dispositions_mapped') }}
    where return_key is not null
    group by return_key
),

per_return as (
    select
        cast(timezone('UTC', returns.requested_at) as date) as day,
        returns.channel,
        coalesce(receipts.warehouse, erp_warehouse.erp_warehouse_code, 'unknown') as warehouse,
        receipts.return_key is not null as is_received,
        coalesce(receipts.units_received, 0) as units_received,
        date_diff('second', returns.requested_at, first_credit.credited_at) / 3600.0
            as refund_cycle_h,
        date_diff('second', receipts.received_at, first_posting.posted_at) / 3600.0
            as posting_latency_h,
        coalesce(mix.units_restock, 0) as units_restock,
        coalesce(mix.units_refurbish, 0) as units_refurbish,
        coalesce(mix.units_scrap, 0) as units_scrap,
        coalesce(mix.units_return_to_vendor, 0) as units_return_to_vendor,
        stage_latencies.requested_to_received_h,
        stage_latencies.received_to_inspected_h,
        stage_latencies.inspected_to_posted_h,
        stage_latencies.refunded_to_credited_h,
        coalesce(stage_latencies.overdue_transitions, 0) as overdue_transitions
    from returns
    left join receipts on receipts.return_key = returns.return_key
    left join erp_warehouse on erp_warehouse.return_key = returns.return_key
    left join first_credit on first_credit.return_key = returns.return_key
    left join first_posting on first_posting.return_key = returns.return_key
    left join mix on mix.return_key = returns.return_key
    left join stage_latencies on stage_latencies.return_key = returns.return_key
)

select
    {{ surrogate_key('kpi', ['day', 'channel', 'warehouse']) }} as kpi_key,
    day,
    cast(channel as varchar) as channel,
    cast(warehouse as varchar) as warehouse,
    cast(count(*) as bigint) as returns_requested,
    cast(count(*) filter (where is_received) as bigint) as returns_received,
    cast(sum(units_received) as decimal(18, 3)) as units_received,
    cast(quantile_cont(refund_cycle_h, 0.5) as double) as refund_cycle_p50_h,
    cast(quantile_cont(refund_cycle_h, 0.9) as double) as refund_cycle_p90_h,
    cast(quantile_cont(posting_latency_h, 0.5) as double) as posting_latency_p50_h,
    cast(quantile_cont(posting_latency_h, 0.9) as double) as posting_latency_p90_h,
    cast(sum(units_restock) as decimal(18, 3)) as units_restock,
    cast(sum(units_refurbish) as decimal(18, 3)) as units_refurbish,
    cast(sum(units_scrap) as decimal(18, 3)) as units_scrap,
    cast(sum(units_return_to_vendor) as decimal(18, 3)) as units_return_to_vendor,
    cast(quantile_cont(requested_to_received_h, 0.5) as double) as requested_to_received_p50_h,
    cast(quantile_cont(requested_to_received_h, 0.9) as double) as requested_to_received_p90_h,
    cast(quantile_cont(received_to_inspected_h, 0.5) as double) as received_to_inspected_p50_h,
    cast(quantile_cont(received_to_inspected_h, 0.9) as double) as received_to_inspected_p90_h,
    cast(quantile_cont(inspected_to_posted_h, 0.5) as double) as inspected_to_posted_p50_h,
    cast(quantile_cont(inspected_to_posted_h, 0.9) as double) as inspected_to_posted_p90_h,
    cast(quantile_cont(refunded_to_credited_h, 0.5) as double) as refunded_to_credited_p50_h,
    cast(quantile_cont(refunded_to_credited_h, 0.9) as double) as refunded_to_credited_p90_h,
    cast(sum(overdue_transitions) as bigint) as overdue_transitions
from per_return
group by day, channel, warehouse
