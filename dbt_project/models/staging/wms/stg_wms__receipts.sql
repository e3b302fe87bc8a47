{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='receipt_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- WMS receipts, current state per receipt_id.
with current_state as (
    {{ cdc_current_state('wms_receipts', 'receipt_id') }}
),

-- Debezium's unavailable-value placeholder (a TOASTed text an update left unchanged) never
-- reaches a mart: macros/debezium_unavailable.sql, as in the ERP staging.
filled as (
    {{ cdc_unavailable_filled('current_state', 'wms_receipts', 'receipt_id') }}
)

select
    receipt_id,
    upper(trim(dc_code)) as dc_code,
    nullif(trim(rma_number), '') as rma_number_scanned,
    {{ normalize_rma('rma_number') }} as rma_normalized,
    nullif(trim(tracking_number), '') as tracking_number,
    {{ normalize_rma('tracking_number') }} as tracking_normalized,
    trim(sku) as sku,
    nullif(trim(lot), '') as lot,
    nullif(trim(serial), '') as serial,
    quantity,
    received_at,
    license_plate,
    _op as source_op,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
