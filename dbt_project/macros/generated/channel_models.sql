{#-
  GENERATED from pipelines/lib/contracts.py by `python -m pipelines.lib.contracts`
  (make sources-yml); do not edit: tests/test_contracts.py fails when it is out of date.
-#}

{#- The models a channel union reads, in registry order: each channel source's
    `stg_<folder>__channel_<union>` (FileSource.channel). -#}
{% macro channel_models(union) -%}
    {%- set found = {
        'returns': [
            'stg_returns_saas__channel_returns',
            'stg_amazon__channel_returns',
            'stg_b2b__channel_returns',
        ],
        'return_lines': [
            'stg_returns_saas__channel_return_lines',
            'stg_amazon__channel_return_lines',
            'stg_b2b__channel_return_lines',
        ],
    } -%}
    {%- if union not in found -%}
        {{ exceptions.raise_compiler_error("no channel union '" ~ union ~ "' (CHANNEL_UNIONS in pipelines/lib/contracts.py)") }}
    {%- endif -%}
    {{ return(found[union]) }}
{%- endmacro %}


{#- The columns of a channel union, in order (each channel model has exactly these). -#}
{% macro channel_columns(union) -%}
    {%- set found = {
        'returns': [
            'channel',
            'source_system',
            'channel_return_id',
            'rma_number',
            'rma_normalized',
            'channel_status',
            'base_status',
            'requested_at',
            'approved_at',
            'closed_at',
            'currency',
            'outcome',
            'tracking_number',
            'tracking_normalized',
            'order_ref',
            'shopify_order_id',
            'source_position',
            'source_changed_at',
        ],
        'return_lines': [
            'channel',
            'source_system',
            'rma_normalized',
            'channel_sku',
            'channel_line_id',
            'qty_requested',
            'unit_price',
            'currency',
            'reason_raw',
            'mapped_reason',
            'refund_amount',
            'source_record_id',
            'source_position',
            'source_changed_at',
        ],
    } -%}
    {%- if union not in found -%}
        {{ exceptions.raise_compiler_error("no channel union '" ~ union ~ "' (CHANNEL_UNIONS in pipelines/lib/contracts.py)") }}
    {%- endif -%}
    {{ return(found[union]) }}
{%- endmacro %}
