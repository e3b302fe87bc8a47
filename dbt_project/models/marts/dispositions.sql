-- Placeholder with the contract's shape (no rows) until the model is written.
select
    cast(null as varchar) as disposition_key,
    cast(null as varchar) as return_line_key,
    cast(null as varchar) as return_key,
    cast(null as bigint) as receipt_id,
    cast(null as bigint) as inspection_id,
    cast(null as varchar) as dc_code,
    cast(null as varchar) as warehouse,
    cast(null as varchar) as sku,
    cast(null as varchar) as grade,
    cast(null as varchar) as disposition,
    cast(null as varchar) as disposition_raw,
    cast(null as varchar) as location_code,
    cast(null as decimal(12,3)) as quantity,
    cast(null as timestamp with time zone) as decided_at,
    cast(null as varchar) as source_system,
    cast(null as varchar) as source_record_id,
    cast(null as varchar) as source_position,
    cast(null as timestamp with time zone) as source_changed_at
where false
