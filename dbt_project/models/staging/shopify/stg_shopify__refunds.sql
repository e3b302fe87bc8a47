{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='refund_id',
    )
}}

-- Shopify refunds (REST Refund resource), one row per refund id (DESIGN §2.5). Only transactions
-- with kind `refund` and status `success` move money: `refund_amount` is their sum, and a refund
-- without one has `is_refund` false. Incremental (macros/file_staging.sql): a refund with a row
-- landed since the last build is recomputed from all its rows, the others are left as they are.
with landed as not materialized (
    select *
    from {{ source('raw', 'shopify_refunds') }}
    where id is not null and {{ landed_since_last_build('shopify_refunds', 'id') }}
),

-- the newest landing of each refund wins (by _ingested_at, _file, _row_number): a hash aggregate
-- over those columns, the row fetched by its position (_file, _row_number, unique per raw table);
-- a window sorted every row with its whole payload
per_refund as (
    select
        id,
        max(_ingested_at) as last_ingested_at,
        arg_max(
            struct_pack(won_file := _file, won_row_number := _row_number),
            struct_pack(i := _ingested_at, f := _file, r := _row_number)
        ) as won
    from landed
    group by 1
),

winners as (
    select
        last_ingested_at,
        unnest(won)
    from per_refund
),

refunds as (
    select
        landed.*,
        winners.last_ingested_at
    from landed
    inner join winners
        on winners.won_file = landed._file and winners.won_row_number = landed._row_number
),

-- `t` is each unnested transaction (a struct): sqlfluff takes `t.amount` for a column of a table
-- `t` missing from the FROM clause, but to DuckDB it is the struct's field.
-- noqa: disable=RF01
successful as (
    select
        refunds.id as refund_id,
        sum(t.amount) as refund_amount,
        min(upper(trim(t.currency))) as currency,
        string_agg(cast(t.id as varchar), ',' order by t.id) as transaction_ids,
        count(*) as transactions
    from refunds, unnest(refunds.transactions) as u (t)
    where lower(t.kind) = 'refund' and lower(t.status) = 'success'
    group by 1
)
-- noqa: enable=RF01

select
    refunds.id as refund_id,
    refunds.order_id,
    refunds.created_at,
    coalesce(refunds.processed_at, refunds.created_at) as processed_at,
    coalesce(successful.refund_amount, 0) as refund_amount,
    successful.currency,
    successful.transaction_ids,
    coalesce(successful.transactions, 0) > 0 as is_refund,
    refunds.refund_line_items,
    refunds._file_sha256 || ':' || refunds._row_number as source_position,
    coalesce(refunds.processed_at, refunds.created_at) as source_changed_at,
    refunds.last_ingested_at as _last_ingested_at
from refunds
left join successful on successful.refund_id = refunds.id
