{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='invoice_line_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP invoice lines (Tryton account_invoice_line), current state per id.
with current_state as (
    {{ cdc_current_state('erp_account_invoice_line', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_account_invoice_line', 'id') }}
)

select
    id as invoice_line_id,
    invoice as invoice_id,
    product as product_id,
    cast(quantity as decimal(12, 3)) as quantity,
    cast(unit_price as decimal(18, 4)) as unit_price,
    origin,
    case when origin like 'sale.line,%' then try_cast(split_part(origin, ',', 2) as bigint) end
        as origin_sale_line_id,
    _op as source_op,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
