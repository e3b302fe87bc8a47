{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='party_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP parties, current state per id. The name is personal data and is left out on purpose.
with current_state as (
    {{ cdc_current_state('erp_party_party', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_party_party', 'id') }}
)

select
    id as party_id,
    code as party_code,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
