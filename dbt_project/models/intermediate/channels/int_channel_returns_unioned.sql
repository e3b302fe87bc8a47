{%- set full = returns_incremental(key='rma_normalized', kind='rma') %}

-- Channel returns of every channel source in one shape, one row per channel return (DESIGN §4):
-- returns SaaS returns (Shopify), Amazon returns (the report's rows grouped by Amazon RMA ID) and
-- B2B credit requests (grouped by request_id). `base_status` is the channel's own state on the
-- canonical scale; approved_at is the start of the stale-return window (DESIGN §5).
-- Each channel source of the source registry (`channel` in pipelines/lib/contracts.py) maps itself
-- into this shape in its own staging folder (`stg_<folder>__channel_returns`); the loop reads the
-- ones `make sources-yml` lists in macros/generated/channel_models.sql, nothing is named here.
with unioned as (
    {%- for channel_model in channel_models('returns') %}
        {%- if not loop.first %}

            union all
        {%- endif %}

        select {{ channel_columns('returns') | join(', ') }}
        from {{ ref(channel_model) }}
        where {{ in_touched('rma_normalized', 'rma', full) }}
    {%- endfor %}
)

select *
from unioned
where rma_normalized is not null
-- two channel returns with one normalized RMA are one return: the earliest requested wins
qualify row_number() over (
    partition by rma_normalized order by requested_at nulls last, channel, channel_return_id
) = 1
