{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='stock_move_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP stock moves (Tryton stock_move), current state per id.
-- origin_sale_line_id: the return line a move comes from. Tryton's own put-away moves of a
-- customer return shipment (input location -> storage) carry the receiving move as their origin
-- (`stock.move,<id>`), whose origin is the return line: followed one step.
with current_state as (
    {{ cdc_current_state('erp_stock_move', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_stock_move', 'id') }}
),

receiving_moves as (
    select
        id as receiving_move_id,
        max(try_cast(split_part(origin, ',', 2) as bigint)) as sale_line_id
    from {{ source('raw', 'erp_stock_move') }}
    where origin like 'sale.line,%' and not coalesce(_is_tombstone, false) and _op <> 'd'
    group by all
)

select
    cs.id as stock_move_id,
    cs.product as product_id,
    cast(cs.quantity as decimal(12, 3)) as quantity,
    cs.from_location as from_location_id,
    cs.to_location as to_location_id,
    cs.shipment,
    cs.origin,
    case
        when cs.origin like 'sale.line,%' then try_cast(split_part(cs.origin, ',', 2) as bigint)
        when cs.origin like 'stock.move,%' then rm.sale_line_id
    end as origin_sale_line_id,
    cs.state,
    cs.effective_date,
    {{ utc('cs.create_date') }} as created_at,
    {{ utc('cs.write_date') }} as updated_at,
    cs._op as source_op,
    cs._position as source_position,
    cs._changed_at as source_changed_at,
    cs._last_ingested_at,
    cs.is_deleted,
    cs.unavailable_columns
from filled as cs
left join receiving_moves as rm
    on
        cs.origin like 'stock.move,%'
        and rm.receiving_move_id = try_cast(split_part(cs.origin, ',', 2) as bigint)
