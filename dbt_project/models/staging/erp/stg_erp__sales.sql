{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='sale_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP orders and return orders (Tryton sale_sale), current state per id.
with current_state as (
    {{ cdc_current_state('erp_sale_sale', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_sale_sale', 'id') }}
)

select
    id as sale_id,
    number as sale_number,
    trim(reference) as reference,
    party as party_id,
    currency as currency_id,
    warehouse as warehouse_id,
    sale_date,
    state,
    origin,
    case when origin like 'sale.sale,%' then try_cast(split_part(origin, ',', 2) as bigint) end
        as origin_sale_id,
    {{ utc('create_date') }} as created_at,
    {{ utc('write_date') }} as updated_at,
    _op as source_op,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
