{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='invoice_id',
        post_hook="{{ delete_deleted_keys() }}",
    )
}}

{%- set placeholder = '__debezium_unavailable_value' %}
-- ERP invoices and credit notes (Tryton account_invoice), current state per id.
-- With REPLICA IDENTITY DEFAULT (the live stack keeps account_invoice there, DESIGN §13), an
-- update that leaves a TOASTed column unchanged (a long description) carries Debezium's
-- placeholder instead of the value: the key's previous value stands, never the placeholder.
with current_state as (
    {{ cdc_current_state('erp_account_invoice', 'id') }}
),

previous_descriptions as (
    select
        id as invoice_id,
        arg_max(
            description,
            [coalesce(_source_lsn, -1), coalesce(_source_ts_ms, -1), _offset]
        ) as description
    from {{ source('raw', 'erp_account_invoice') }}
    where
        description is distinct from '{{ placeholder }}'
        and not coalesce(_is_tombstone, false)
        and _op in ('c', 'r', 'u')
        and id in (
            select cs.id from current_state as cs
            where cs.description = '{{ placeholder }}'
        )
    group by all
)

select
    cs.id as invoice_id,
    cs.number as invoice_number,
    cs.type as invoice_type,
    cs.party as party_id,
    cs.currency as currency_id,
    cs.invoice_date,
    cs.state,
    trim(cs.reference) as reference,
    case
        when cs.description = '{{ placeholder }}' then pd.description
        else cs.description
    end as description,
    cs.total_amount_cache as total_amount,
    {{ utc('cs.create_date') }} as created_at,
    {{ utc('cs.write_date') }} as updated_at,
    cs._op as source_op,
    cs._position as source_position,
    cs._changed_at as source_changed_at,
    cs._last_ingested_at,
    cs.is_deleted
from current_state as cs
left join previous_descriptions as pd on pd.invoice_id = cs.id
