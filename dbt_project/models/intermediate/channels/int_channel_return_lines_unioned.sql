{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Channel return lines of every channel source in one shape, with the ERP product code through
-- the SKU crosswalk and the canonical reason (each channel maps its reasons through the reason_map
-- seed; unknown reasons: `other`). The line's identity within its return is the ERP product code,
-- or `channel_sku:<sku>` when the channel SKU has no crosswalk entry.
-- Each channel source of the source registry (`channel` in pipelines/lib/contracts.py) maps itself
-- into the shape in its own staging folder (`stg_<folder>__channel_return_lines`); the loop reads
-- the ones `make sources-yml` lists in macros/generated/channel_models.sql.
with crosswalk as (
    select * from {{ ref('stg_reference__sku_crosswalks') }}
),

unioned as (
    {%- for channel_model in channel_models('return_lines') %}
        {%- if not loop.first %}

            union all
        {%- endif %}

        select {{ channel_columns('return_lines') | join(', ') }}
        from {{ ref(channel_model) }}
        where {{ in_touched('rma_normalized', 'rma', full) }}
    {%- endfor %}
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
