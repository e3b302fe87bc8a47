{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='sale_line_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP order lines (Tryton sale_line), current state per id; negative quantity on a return order.
with current_state as (
    {{ cdc_current_state('erp_sale_line', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_sale_line', 'id') }}
)

select
    id as sale_line_id,
    sale as sale_id,
    product as product_id,
    cast(quantity as decimal(12, 3)) as quantity,
    cast(unit_price as decimal(18, 4)) as unit_price,
    description,
    _op as source_op,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
