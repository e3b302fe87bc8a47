{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='amazon_rma_id',
    )
}}

-- Amazon merchant-fulfilled returns, one row per (Amazon RMA ID, Merchant SKU) (DESIGN §2.6).
-- Successive reports overlap: the newest report (report_date) wins, then the later file row.
-- `first_reported_on` is the first report that showed the winning row's status and refunded
-- amount, so a row merely repeated in a later report does not move the refund's time.
-- Incremental (macros/file_staging.sql): an RMA with a report row landed since the last build is
-- recomputed from all its rows, the others are left as they are.
with all_rows as (
    select *
    from {{ source('raw', 'amazon_returns') }}
    where
        nullif(trim(amazon_rma_id), '') is not null
        and {{ landed_since_last_build('amazon_returns', 'trim(amazon_rma_id)') }}
),

rows_ as (
    select
        *,
        max(_ingested_at) over (
            partition by trim(amazon_rma_id), trim(merchant_sku)
        ) as last_ingested_at
    from all_rows
    qualify row_number() over (
        partition by trim(amazon_rma_id), trim(merchant_sku)
        order by report_date desc nulls last, _ingested_at desc, _file desc, _row_number desc
    ) = 1
),

first_seen as (
    select
        trim(rows_.amazon_rma_id) as fs_rma_id,
        trim(rows_.merchant_sku) as fs_sku,
        min(all_rows.report_date) as first_reported_on
    from rows_
    inner join all_rows
        on
            trim(all_rows.amazon_rma_id) = trim(rows_.amazon_rma_id)
            and trim(all_rows.merchant_sku) is not distinct from trim(rows_.merchant_sku)
            and all_rows.return_request_status is not distinct from rows_.return_request_status
            and all_rows.refunded_amount is not distinct from rows_.refunded_amount
    group by 1, 2
)

select
    trim(rows_.amazon_rma_id) as amazon_rma_id,
    {{ normalize_rma('rows_.amazon_rma_id') }} as rma_normalized,
    trim(rows_.merchant_sku) as channel_sku,
    trim(rows_.order_id) as order_id,
    rows_.order_date,
    rows_.return_request_date,
    nullif(trim(rows_.return_request_status), '') as return_request_status,
    nullif(trim(rows_.merchant_rma_id), '') as merchant_rma_id,
    upper(nullif(trim(rows_.currency_code), '')) as currency,
    nullif(trim(rows_.tracking_id), '') as tracking_number,
    {{ normalize_rma('rows_.tracking_id') }} as tracking_normalized,
    nullif(trim(rows_.asin), '') as asin,
    cast(rows_.return_quantity as decimal(12, 3)) as quantity,
    nullif(trim(rows_.return_reason), '') as return_reason,
    nullif(trim(rows_.resolution), '') as resolution,
    nullif(trim(rows_.return_type), '') as return_type,
    rows_.return_delivery_date,
    rows_.order_amount,
    rows_.order_quantity,
    rows_.refunded_amount,
    rows_.report_date,
    first_seen.first_reported_on,
    rows_._file as source_file,
    rows_._file_sha256 || ':' || rows_._row_number as source_position,
    coalesce(
        rows_.return_delivery_date, {{ utc('first_seen.first_reported_on') }}
    ) as source_changed_at,
    rows_.last_ingested_at as _last_ingested_at
from rows_
left join first_seen
    on
        first_seen.fs_rma_id = trim(rows_.amazon_rma_id)
        and first_seen.fs_sku is not distinct from trim(rows_.merchant_sku)
