{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='inspection_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- WMS inspections (one receipt can be split over several), current state per inspection_id.
with current_state as (
    {{ cdc_current_state('wms_inspections', 'inspection_id') }}
),

-- Debezium's unavailable-value placeholder (a TOASTed text an update left unchanged) never
-- reaches a mart: macros/debezium_unavailable.sql, as in the ERP staging.
filled as (
    {{ cdc_unavailable_filled('current_state', 'wms_inspections', 'inspection_id') }}
)

select
    inspection_id,
    receipt_id,
    upper(trim(grade)) as grade,
    upper(trim(disposition)) as disposition_code,
    quantity,
    inspected_at,
    _op as source_op,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
