-- ERP products (Tryton product_product), current state per id.
with current_state as (
    {{ cdc_current_state('erp_product_product', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_product_product', 'id') }}
)

select
    id as product_id,
    trim(code) as product_code,
    _position as source_position,
    _changed_at as source_changed_at,
    unavailable_columns
from filled
