{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='currency_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP currencies (Tryton currency_currency), current state per id.
with current_state as (
    {{ cdc_current_state('erp_currency_currency', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_currency_currency', 'id') }}
)

select
    id as currency_id,
    upper(trim(code)) as currency_code,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
