{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='stock_move_id',
        post_hook="{{ delete_deleted_keys() }}",
    )
}}

-- ERP stock moves (Tryton stock_move), current state per id.
with current_state as (
    {{ cdc_current_state('erp_stock_move', 'id') }}
)

select
    id as stock_move_id,
    product as product_id,
    cast(quantity as decimal(12, 3)) as quantity,
    from_location as from_location_id,
    to_location as to_location_id,
    shipment,
    origin,
    case when origin like 'sale.line,%' then try_cast(split_part(origin, ',', 2) as bigint) end
        as origin_sale_line_id,
    state,
    effective_date,
    {{ utc('create_date') }} as created_at,
    {{ utc('write_date') }} as updated_at,
    _op as source_op,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted
from current_state
