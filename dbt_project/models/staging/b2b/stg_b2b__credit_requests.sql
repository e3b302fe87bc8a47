{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='request_id',
    )
}}

-- B2B credit requests, one row per (request_id, sku) (DESIGN §2.7): the newest by approval (else
-- request) time wins, a decided request (approved, rejected) over a submitted one, then the later
-- landed file row. Incremental (macros/file_staging.sql): a request with a row landed since the
-- last build is recomputed from all its rows, the others are left as they are.
with rows_ as (
    select
        *,
        max(_ingested_at) over (partition by trim(request_id), trim(sku)) as last_ingested_at
    from {{ source('raw', 'b2b_credit_requests') }}
    where
        nullif(trim(request_id), '') is not null
        and {{ landed_since_last_build('b2b_credit_requests', 'trim(request_id)') }}
    qualify row_number() over (
        partition by trim(request_id), trim(sku)
        order by
            coalesce(approved_at, requested_at) desc nulls last,
            (lower(trim(status)) <> 'submitted') desc,
            _ingested_at desc,
            _file desc,
            _row_number desc
    ) = 1
)

select
    trim(request_id) as request_id,
    {{ normalize_rma('request_id') }} as rma_normalized,
    trim(account_number) as account_number,
    trim(po_number) as po_number,
    trim(erp_order_number) as erp_order_number,
    trim(sku) as channel_sku,
    quantity,
    cast(unit_price as decimal(18, 4)) as unit_price,
    upper(trim(currency)) as currency,
    nullif(upper(trim(reason_code)), '') as reason_code,
    requested_at,
    lower(trim(status)) as status,
    approved_at,
    _file_sha256 || ':' || _row_number as source_position,
    coalesce(approved_at, requested_at) as source_changed_at,
    last_ingested_at as _last_ingested_at
from rows_
