-- Placeholder with the contract's shape (no rows) until the model is written.
select
    cast(null as bigint) as receipt_id,
    cast(null as varchar) as return_key,
    cast(null as varchar) as return_line_key,
    cast(null as varchar) as link_rule,
    cast(null as varchar) as dc_code,
    cast(null as varchar) as warehouse,
    cast(null as varchar) as rma_number_scanned,
    cast(null as varchar) as tracking_number,
    cast(null as varchar) as sku,
    cast(null as varchar) as lot,
    cast(null as varchar) as serial,
    cast(null as decimal(12,3)) as quantity,
    cast(null as timestamp with time zone) as received_at,
    cast(null as varchar) as source_system,
    cast(null as varchar) as source_record_id,
    cast(null as varchar) as source_position,
    cast(null as timestamp with time zone) as source_changed_at
where false
