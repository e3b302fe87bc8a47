-- Amazon merchant-fulfilled returns, one row per (Amazon RMA ID, Merchant SKU) (DESIGN §2.6).
-- Successive reports overlap: the newest report (report_date) wins, then the later file row.
with rows_ as (
    select *
    from {{ source('raw', 'amazon_returns') }}
    where nullif(trim(amazon_rma_id), '') is not null
    qualify row_number() over (
        partition by trim(amazon_rma_id), trim(merchant_sku)
        order by report_date desc nulls last, _ingested_at desc, _file desc, _row_number desc
    ) = 1
)

select
    trim(amazon_rma_id) as amazon_rma_id,
    {{ normalize_rma('amazon_rma_id') }} as rma_normalized,
    trim(merchant_sku) as channel_sku,
    trim(order_id) as order_id,
    order_date,
    return_request_date,
    nullif(trim(return_request_status), '') as return_request_status,
    nullif(trim(merchant_rma_id), '') as merchant_rma_id,
    upper(nullif(trim(currency_code), '')) as currency,
    nullif(trim(tracking_id), '') as tracking_number,
    {{ normalize_rma('tracking_id') }} as tracking_normalized,
    nullif(trim(asin), '') as asin,
    cast(return_quantity as decimal(12, 3)) as quantity,
    nullif(trim(return_reason), '') as return_reason,
    nullif(trim(resolution), '') as resolution,
    nullif(trim(return_type), '') as return_type,
    return_delivery_date,
    order_amount,
    order_quantity,
    refunded_amount,
    report_date,
    _file as source_file,
    _file_sha256 || ':' || _row_number as source_position,
    coalesce(return_delivery_date, {{ utc('report_date') }}) as source_changed_at
from rows_
