{#- A model's custom schema is used as is (staging, intermediate, marts, recon, seeds), not
    prefixed with the target schema: the DuckDB location is the asset key. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name | trim if custom_schema_name else target.schema }}
{%- endmacro %}
