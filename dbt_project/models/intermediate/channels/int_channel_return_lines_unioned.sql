{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Channel return lines of the three channels in one shape, with the ERP product code through the
-- SKU crosswalk and the canonical reason through the reason_map seed (unknown reasons: `other`).
-- The line's identity within its return is the ERP product code, or `channel_sku:<sku>` when the
-- channel SKU has no crosswalk entry.
-- One CTE per channel source of the source registry (`channel` in pipelines/lib/contracts.py):
-- a new one adds its CTE here and in the other union (tests/test_contracts.py checks both).
with crosswalk as (
    select * from {{ ref('stg_reference__sku_crosswalks') }}
),

reasons as (
    select source_system, upper(trim(source_reason)) as source_reason, reason
    from {{ ref('reason_map') }}
),

saas as (
    select
        'shopify' as channel,
        'returns_saas' as source_system,
        items.rma_normalized,
        items.channel_sku,
        cast(items.provider_line_item_id as varchar) as channel_line_id,
        items.quantity as qty_requested,
        items.unit_price,
        items.currency,
        coalesce(items.return_reason, items.parent_return_reason) as reason_raw,
        coalesce(r1.reason, r2.reason) as mapped_reason,
        items.refund_amount,
        cast(items.return_id as varchar) || ':' || coalesce(cast(items.line_item_id as varchar), '')
            as source_record_id,
        items.source_position,
        items.source_changed_at
    from {{ ref('stg_returns_saas__return_line_items') }} as items
    left join reasons as r1
        on r1.source_system = 'returns_saas' and r1.source_reason = upper(items.return_reason)
    left join reasons as r2
        on
            r2.source_system = 'returns_saas_parent'
            and r2.source_reason = upper(items.parent_return_reason)
    where {{ in_touched('items.rma_normalized', 'rma', full) }}
),

amazon as (
    select
        'amazon',
        'amazon',
        rows_.rma_normalized,
        rows_.channel_sku,
        cast(null as varchar),
        rows_.quantity,
        case when rows_.order_quantity > 0 then rows_.order_amount / rows_.order_quantity end,
        rows_.currency,
        rows_.return_reason,
        reasons.reason,
        rows_.refunded_amount,
        rows_.amazon_rma_id || ':' || rows_.channel_sku,
        rows_.source_position,
        rows_.source_changed_at
    from {{ ref('stg_amazon__returns') }} as rows_
    left join reasons
        on reasons.source_system = 'amazon' and reasons.source_reason = upper(rows_.return_reason)
    where {{ in_touched('rows_.rma_normalized', 'rma', full) }}
),

b2b as (
    select
        'b2b',
        'b2b',
        rows_.rma_normalized,
        rows_.channel_sku,
        cast(null as varchar),
        rows_.quantity,
        rows_.unit_price,
        rows_.currency,
        rows_.reason_code,
        reasons.reason,
        cast(null as decimal(18, 4)),
        rows_.request_id || ':' || rows_.channel_sku,
        rows_.source_position,
        rows_.source_changed_at
    from {{ ref('stg_b2b__credit_requests') }} as rows_
    left join reasons
        on reasons.source_system = 'b2b' and reasons.source_reason = upper(rows_.reason_code)
    where {{ in_touched('rows_.rma_normalized', 'rma', full) }}
),

unioned as (
    select * from saas
    union all
    select * from amazon
    union all
    select * from b2b
)

select
    unioned.channel,
    unioned.source_system,
    unioned.rma_normalized,
    {{ surrogate_key('return', ['unioned.rma_normalized']) }} as return_key,
    unioned.channel_sku,
    crosswalk.erp_product_code as sku,
    crosswalk.erp_product_code is not null as is_sku_mapped,
    coalesce(crosswalk.erp_product_code, 'channel_sku:' || unioned.channel_sku) as line_ident,
    {{ surrogate_key('return_line', [
        'unioned.rma_normalized',
        "coalesce(crosswalk.erp_product_code, 'channel_sku:' || unioned.channel_sku)",
    ]) }} as return_line_key,
    unioned.channel_line_id,
    unioned.qty_requested,
    cast(unioned.unit_price as decimal(18, 4)) as unit_price,
    unioned.currency,
    unioned.reason_raw,
    case when unioned.reason_raw is null then null else coalesce(unioned.mapped_reason, 'other') end
        as reason,
    unioned.refund_amount,
    unioned.source_record_id,
    unioned.source_position,
    unioned.source_changed_at
from unioned
left join crosswalk
    on crosswalk.channel = unioned.channel and crosswalk.channel_sku = unioned.channel_sku
where unioned.rma_normalized is not null
