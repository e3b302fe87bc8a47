{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='product_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

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
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
