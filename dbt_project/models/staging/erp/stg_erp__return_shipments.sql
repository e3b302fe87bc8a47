{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='shipment_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP customer return shipments (Tryton stock_shipment_out_return), current state per id.
with current_state as (
    {{ cdc_current_state('erp_stock_shipment_out_return', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_stock_shipment_out_return', 'id') }}
)

select
    id as shipment_id,
    number as shipment_number,
    trim(reference) as reference,
    warehouse as warehouse_id,
    state,
    effective_date,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
