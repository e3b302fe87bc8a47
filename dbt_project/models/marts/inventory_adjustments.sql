-- Placeholder with the contract's shape (no rows) until the model is written.
select
    cast(null as varchar) as adjustment_key,
    cast(null as varchar) as return_line_key,
    cast(null as varchar) as return_key,
    cast(null as bigint) as erp_return_line_id,
    cast(null as varchar) as sku,
    cast(null as varchar) as warehouse,
    cast(null as varchar) as location,
    cast(null as varchar) as from_location,
    cast(null as decimal(12,3)) as quantity,
    cast(null as timestamp with time zone) as posted_at,
    cast(null as varchar) as external_id,
    cast(null as varchar) as shipment,
    cast(null as varchar) as source_system,
    cast(null as varchar) as source_record_id,
    cast(null as varchar) as source_position,
    cast(null as timestamp with time zone) as source_changed_at
where false
