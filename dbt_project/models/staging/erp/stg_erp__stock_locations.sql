{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='location_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP stock locations (warehouses and their disposition locations), current state per id.
with current_state as (
    {{ cdc_current_state('erp_stock_location', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_stock_location', 'id') }}
)

select
    id as location_id,
    trim(code) as location_code,
    name as location_name,
    type as location_type,
    parent as parent_location_id,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
