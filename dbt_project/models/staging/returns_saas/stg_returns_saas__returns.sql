{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='return_id',
    )
}}

-- Returns SaaS returns, current state per return id (DESIGN §2.4): a redelivered webhook (same
-- webhook_id) counts once, and the delivery with the newest payload `updated_at` wins, whatever
-- order the deliveries arrived in (ties: newest delivered_at, then file position).
-- Incremental (macros/file_staging.sql): only returns with a delivery landed since the last build
-- are recomputed, from all their deliveries, so a full refresh gives the same table.
with deliveries as (
    select *
    from {{ source('raw', 'returns_saas_webhooks') }}
    where
        return_id is not null
        and {{ landed_since_last_build('returns_saas_webhooks', 'return_id') }}
    -- a redelivery is the same delivery: keep its first landing
    qualify row_number() over (
        partition by webhook_id order by _ingested_at, _file, _row_number
    ) = 1
),

per_return as (
    select
        return_id,
        min(created_at) as first_created_at,
        max(_ingested_at) as _last_ingested_at,
        count(*) as deliveries
    from deliveries
    group by 1
),

latest as (
    select *
    from deliveries
    qualify row_number() over (
        partition by return_id
        order by
            updated_at desc nulls last, delivered_at desc nulls last, _file desc, _row_number desc
    ) = 1
)

select
    latest.return_id,
    trim(latest.rma) as rma_number,
    {{ normalize_rma('latest.rma') }} as rma_normalized,
    lower(trim(latest.state)) as state,
    latest.topic as last_topic,
    coalesce(latest.created_at, per_return.first_created_at) as created_at,
    latest.updated_at,
    latest.order_id,
    latest.order_name,
    upper(trim(latest.currency)) as currency,
    lower(trim(latest.outcome)) as outcome,
    latest.total_refund,
    nullif(trim(latest.tracking_number), '') as tracking_number,
    {{ normalize_rma('latest.tracking_number') }} as tracking_normalized,
    latest.line_items,
    latest.webhook_id,
    per_return.deliveries,
    latest._file_sha256 || ':' || latest._row_number as source_position,
    latest.updated_at as source_changed_at,
    per_return._last_ingested_at
from latest
inner join per_return on per_return.return_id = latest.return_id
