-- Placeholder with the contract's shape (no rows) until the model is written.
select
    cast(null as varchar) as credit_key,
    cast(null as varchar) as return_key,
    cast(null as varchar) as return_line_key,
    cast(null as varchar) as system,
    cast(null as varchar) as kind,
    cast(null as boolean) as is_channel_refund,
    cast(null as decimal(18,4)) as amount,
    cast(null as varchar) as currency,
    cast(null as timestamp with time zone) as issued_at,
    cast(null as varchar) as external_id,
    cast(null as varchar) as external_line_id,
    cast(null as varchar) as sku,
    cast(null as decimal(12,3)) as quantity,
    cast(null as varchar) as link_rule,
    cast(null as varchar) as source_system,
    cast(null as varchar) as source_record_id,
    cast(null as varchar) as source_position,
    cast(null as timestamp with time zone) as source_changed_at
where false
