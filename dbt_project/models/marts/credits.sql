{%- set full = returns_incremental(condition='credits_touched_condition()') %}

-- One row per money movement for a return (per document line where the document has lines).
select
    cast(credit_key as varchar) as credit_key,
    cast(return_key as varchar) as return_key,
    cast(return_line_key as varchar) as return_line_key,
    cast(system as varchar) as system,
    cast(kind as varchar) as kind,
    cast(is_channel_refund as boolean) as is_channel_refund,
    cast(amount as decimal(18, 4)) as amount,
    cast(currency as varchar) as currency,
    cast(issued_at as timestamp with time zone) as issued_at,
    cast(external_id as varchar) as external_id,
    cast(external_line_id as varchar) as external_line_id,
    cast(sku as varchar) as sku,
    cast(quantity as decimal(12, 3)) as quantity,
    cast(link_rule as varchar) as link_rule,
    cast(source_system as varchar) as source_system,
    cast(source_record_id as varchar) as source_record_id,
    cast(source_position as varchar) as source_position,
    cast(source_changed_at as timestamp with time zone) as source_changed_at
from {{ ref('int_credits_unioned') }}
where
    {{ in_touched('return_key', 'return', full) }}
    or (
        return_key is null
        and system = 'shopify'
        and {{ in_touched('try_cast(external_id as bigint)', 'refund', full) }}
    )
