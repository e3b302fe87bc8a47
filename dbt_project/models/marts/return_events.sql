{%- set full = returns_incremental(key='return_key', kind='return') %}

-- One row per lifecycle step of a return, from whichever system recorded it.
with returns as (
    select * from {{ ref('int_returns_linked') }}
    where {{ in_touched('return_key', 'return', full) }}
),

steps as (
    select
        return_key,
        'requested' as event,
        requested_at as occurred_at,
        source_system,
        source_record_id
    from returns
    where requested_at is not null and channel is not null

    union all

    select return_key, 'approved', approved_at, source_system, source_record_id
    from returns
    where approved_at is not null and base_status <> 'requested'

    union all

    select
        return_key,
        base_status,
        coalesce(closed_at, source_changed_at),
        source_system,
        source_record_id
    from returns
    where base_status in ('closed', 'cancelled', 'rejected', 'expired')

    union all

    select return_key, 'received', received_at, 'wms', cast(receipt_id as varchar)
    from {{ ref('int_receipts_linked') }}
    where return_key is not null and {{ in_touched('return_key', 'return', full) }}

    union all

    select return_key, 'inspected', inspected_at, 'wms', cast(inspection_id as varchar)
    from {{ ref('int_dispositions_mapped') }}
    where return_key is not null and {{ in_touched('return_key', 'return', full) }}

    union all

    select return_key, 'posted', posted_at, 'erp', cast(stock_move_id as varchar)
    from {{ ref('int_return_stock_moves_joined') }}
    where state = 'done' and {{ in_touched('return_key', 'return', full) }}

    union all

    select
        return_key,
        case when system = 'erp' then 'credited' else 'refunded' end,
        min(issued_at),
        system,
        external_id
    from {{ ref('int_credits_unioned') }}
    where return_key is not null and {{ in_touched('return_key', 'return', full) }}
    group by all
)

select
    {{ surrogate_key('event', ['return_key', 'event', 'source_system', 'source_record_id']) }}
        as event_key,
    cast(return_key as varchar) as return_key,
    cast(event as varchar) as event,
    cast(occurred_at as timestamp with time zone) as occurred_at,
    cast(source_system as varchar) as source_system,
    cast(source_record_id as varchar) as source_record_id
from steps
where occurred_at is not null
