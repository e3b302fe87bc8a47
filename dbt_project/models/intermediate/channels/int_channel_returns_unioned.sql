{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Channel returns of the three channels in one shape, one row per channel return (DESIGN §4):
-- returns SaaS returns (Shopify), Amazon returns (the report's rows grouped by Amazon RMA ID) and
-- B2B credit requests (grouped by request_id). `base_status` is the channel's own state on the
-- canonical scale; approved_at is the start of the stale-return window (DESIGN §5).
-- One CTE per channel source of the source registry (`channel` in pipelines/lib/contracts.py):
-- a new one adds its CTE here and in the other union (tests/test_contracts.py checks both).
with saas as (
    select * from {{ ref('stg_returns_saas__returns') }}
    where {{ in_touched('rma_normalized', 'rma', full) }}
),

amazon_rows as (
    select * from {{ ref('stg_amazon__returns') }}
    where {{ in_touched('rma_normalized', 'rma', full) }}
),

amazon as (
    select
        amazon_rma_id,
        rma_normalized,
        min(return_request_date) as requested_at,
        arg_max(
            return_request_status,
            {'report_date': report_date, 'delivered': return_delivery_date, 'sku': channel_sku}
        ) as status,
        arg_max(
            resolution,
            {'report_date': report_date, 'delivered': return_delivery_date, 'sku': channel_sku}
        ) as resolution,
        min(currency) as currency,
        min(tracking_number) as tracking_number,
        min(tracking_normalized) as tracking_normalized,
        min(order_id) as order_id,
        max(source_changed_at) as last_changed_at,
        arg_max(
            source_position,
            {'report_date': report_date, 'delivered': return_delivery_date, 'sku': channel_sku}
        ) as source_position
    from amazon_rows
    group by 1, 2
),

b2b_rows as (
    select * from {{ ref('stg_b2b__credit_requests') }}
    where {{ in_touched('rma_normalized', 'rma', full) }}
),

b2b as (
    select
        request_id,
        rma_normalized,
        min(requested_at) as requested_at,
        max(approved_at) as approved_at,
        -- a request is approved when any line is, rejected when all are, submitted otherwise
        case
            when bool_or(status = 'approved') then 'approved'
            when bool_and(status = 'rejected') then 'rejected'
            else 'submitted'
        end as status,
        min(currency) as currency,
        min(po_number) as po_number,
        max(source_changed_at) as last_changed_at,
        min(source_position) as source_position
    from b2b_rows
    group by 1, 2
),

unioned as (
    select
        'shopify' as channel,
        'returns_saas' as source_system,
        cast(return_id as varchar) as channel_return_id,
        rma_number,
        rma_normalized,
        state as channel_status,
        case state
            when 'review' then 'requested'
            when 'open' then 'approved'
            when 'closed' then 'closed'
            when 'cancelled' then 'cancelled'
            when 'expired' then 'expired'
            else 'requested'
        end as base_status,
        created_at as requested_at,
        created_at as approved_at,
        case when state in ('closed', 'cancelled', 'expired') then updated_at end as closed_at,
        currency,
        coalesce(outcome, 'refund') as outcome,
        tracking_number,
        tracking_normalized,
        order_name as order_ref,
        order_id as shopify_order_id,
        source_position,
        source_changed_at
    from saas

    union all

    select
        'amazon',
        'amazon',
        amazon_rma_id,
        amazon_rma_id as rma_number,
        rma_normalized,
        status,
        case
            when lower(status) similar to '.*(cancel).*' then 'cancelled'
            when lower(status) similar to '.*(reject|denied|declined).*' then 'rejected'
            when lower(status) similar to '.*(closed|completed|complete).*' then 'closed'
            when lower(status) similar to '.*(approved|authorized|authorised).*' then 'approved'
            else 'requested'
        end,
        requested_at,
        requested_at as approved_at,
        case
            when lower(status) similar to '.*(cancel|reject|denied|declined|closed|complete).*'
                then last_changed_at
        end,
        currency,
        case when lower(resolution) like '%replace%' then 'exchange' else 'refund' end,
        tracking_number,
        tracking_normalized,
        order_id,
        cast(null as bigint),
        source_position,
        last_changed_at
    from amazon

    union all

    select
        'b2b',
        'b2b',
        request_id,
        request_id as rma_number,
        rma_normalized,
        status,
        case status
            when 'approved' then 'approved'
            when 'rejected' then 'rejected'
            else 'requested'
        end,
        requested_at,
        approved_at,
        case when status = 'rejected' then last_changed_at end,
        currency,
        'refund',
        cast(null as varchar),
        cast(null as varchar),
        po_number,
        cast(null as bigint),
        source_position,
        last_changed_at
    from b2b
)

select *
from unioned
where rma_normalized is not null
-- two channel returns with one normalized RMA are one return: the earliest requested wins
qualify row_number() over (
    partition by rma_normalized order by requested_at nulls last, channel, channel_return_id
) = 1
