{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='invoice_id',
        post_hook="{{ delete_deleted_keys() }}",
        on_schema_change='append_new_columns',
    )
}}

-- ERP invoices and credit notes (Tryton account_invoice), current state per id.
-- With REPLICA IDENTITY DEFAULT (the live stack keeps account_invoice there, DESIGN §13), an
-- update that leaves a TOASTed column unchanged (a long description) carries Debezium's
-- placeholder instead of the value: the key's previous value stands, never the placeholder
-- (macros/debezium_unavailable.sql; every ERP staging model does the same).
with current_state as (
    {{ cdc_current_state('erp_account_invoice', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_account_invoice', 'id') }}
)

select
    id as invoice_id,
    number as invoice_number,
    type as invoice_type,
    party as party_id,
    currency as currency_id,
    invoice_date,
    state,
    trim(reference) as reference,
    description,
    total_amount_cache as total_amount,
    {{ utc('create_date') }} as created_at,
    {{ utc('write_date') }} as updated_at,
    _op as source_op,
    _position as source_position,
    _changed_at as source_changed_at,
    _last_ingested_at,
    is_deleted,
    unavailable_columns
from filled
