{%- set full = returns_incremental(key='return_key', kind='return') %}

-- One row per done ERP stock move whose origin is an ERP return line.
select
    {{ surrogate_key('stock_move', ['stock_move_id']) }} as adjustment_key,
    cast(return_line_key as varchar) as return_line_key,
    cast(return_key as varchar) as return_key,
    cast(erp_return_line_id as bigint) as erp_return_line_id,
    cast(sku as varchar) as sku,
    cast(warehouse as varchar) as warehouse,
    cast(location as varchar) as location,
    cast(from_location as varchar) as from_location,
    cast(quantity as decimal(12, 3)) as quantity,
    cast(posted_at as timestamp with time zone) as posted_at,
    cast(stock_move_id as varchar) as external_id,
    cast(shipment as varchar) as shipment,
    'erp' as source_system,
    cast(stock_move_id as varchar) as source_record_id,
    cast(source_position as varchar) as source_position,
    cast(source_changed_at as timestamp with time zone) as source_changed_at
from {{ ref('int_return_stock_moves_joined') }}
where state = 'done' and {{ in_touched('return_key', 'return', full) }}
