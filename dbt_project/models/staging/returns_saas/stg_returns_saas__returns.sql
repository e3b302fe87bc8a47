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
with landed as not materialized (
    select *
    from {{ source('raw', 'returns_saas_webhooks') }}
    where
        return_id is not null
        and {{ landed_since_last_build('returns_saas_webhooks', 'return_id') }}
),

-- a redelivery is the same delivery: keep its first landing (by _ingested_at, _file, _row_number).
-- The rules are hash aggregates over the few columns they order by, and the winning row is
-- fetched by its position (_file, _row_number, unique per raw table): windows sorted every
-- delivery with its whole payload.
first_landings as (
    select
        webhook_id,
        arg_min(
            struct_pack(
                return_id := return_id,
                created_at := created_at,
                updated_at := updated_at,
                delivered_at := delivered_at,
                _file := _file,
                _row_number := _row_number,
                _ingested_at := _ingested_at
            ),
            struct_pack(i := _ingested_at, f := _file, r := _row_number)
        ) as d
    from landed
    group by 1
),

deliveries as (
    select unnest(d) from first_landings
),

-- the delivery with the newest payload updated_at wins (nulls last), then the newest
-- delivered_at, then the file position
per_return as (
    select
        return_id,
        min(created_at) as first_created_at,
        max(_ingested_at) as _last_ingested_at,
        count(*) as deliveries,
        arg_max(
            struct_pack(won_file := _file, won_row_number := _row_number),
            struct_pack(
                has_updated := updated_at is not null,
                updated := updated_at,
                has_delivered := delivered_at is not null,
                delivered := delivered_at,
                f := _file,
                r := _row_number
            )
        ) as won
    from deliveries
    group by 1
),

winners as (
    select
        return_id,
        first_created_at,
        _last_ingested_at,
        deliveries,
        unnest(won)
    from per_return
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
-- the winning delivery's row, by its position
from landed as latest
inner join winners as per_return
    on per_return.won_file = latest._file and per_return.won_row_number = latest._row_number
