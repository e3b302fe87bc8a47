-- Placeholder with the contract's shape (no rows) until the model is written.
select
    cast(null as varchar) as event_key,
    cast(null as varchar) as return_key,
    cast(null as varchar) as event,
    cast(null as timestamp with time zone) as occurred_at,
    cast(null as varchar) as source_system,
    cast(null as varchar) as source_record_id
where false
