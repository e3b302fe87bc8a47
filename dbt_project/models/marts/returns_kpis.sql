-- Placeholder with the contract's shape (no rows) until the model is written.
select
    cast(null as varchar) as kpi_key,
    cast(null as date) as day,
    cast(null as varchar) as channel,
    cast(null as varchar) as warehouse,
    cast(null as bigint) as returns_requested,
    cast(null as bigint) as returns_received,
    cast(null as decimal(18,3)) as units_received,
    cast(null as double) as refund_cycle_p50_h,
    cast(null as double) as refund_cycle_p90_h,
    cast(null as double) as posting_latency_p50_h,
    cast(null as double) as posting_latency_p90_h,
    cast(null as decimal(18,3)) as units_restock,
    cast(null as decimal(18,3)) as units_refurbish,
    cast(null as decimal(18,3)) as units_scrap,
    cast(null as decimal(18,3)) as units_return_to_vendor
where false
