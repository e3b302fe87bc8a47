{%- set full = returns_incremental(key='return_key', kind='return') %}

-- ERP stock moves caused by a return: moves whose origin is an ERP return line
-- (`sale.line,<id>`), with location and warehouse codes and the product code. posted_at is when
-- the move was last written (the time it was done), else its effective date at 00:00 UTC.
with moves as (
    select * from {{ ref('stg_erp__stock_moves') }} where not is_deleted
),

return_lines as (
    select * from {{ ref('int_return_order_lines_joined') }}
    where {{ in_touched('return_key', 'return', full) }}
),

locations as (
    select * from {{ ref('int_stock_locations_resolved') }}
),

products as (
    select * from {{ ref('stg_erp__products') }}
)

select
    moves.stock_move_id,
    moves.state,
    return_lines.return_key,
    return_lines.return_line_key,
    moves.origin_sale_line_id as erp_return_line_id,
    coalesce(products.product_code, return_lines.product_code) as sku,
    to_loc.warehouse_code as warehouse,
    to_loc.location_code as location,
    from_loc.location_code as from_location,
    moves.quantity,
    coalesce(moves.updated_at, {{ utc('moves.effective_date') }}) as posted_at,
    moves.shipment,
    moves.source_position,
    moves.source_changed_at
from moves
inner join return_lines on return_lines.sale_line_id = moves.origin_sale_line_id
left join locations as to_loc on to_loc.location_id = moves.to_location_id
left join locations as from_loc on from_loc.location_id = moves.from_location_id
left join products on products.product_id = moves.product_id
