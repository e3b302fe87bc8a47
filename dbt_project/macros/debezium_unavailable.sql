{#-
    Debezium's unavailable-value placeholder (DESIGN §13, STACK_NOTES "Debezium on PostgreSQL").

    A captured table at REPLICA IDENTITY DEFAULT: an UPDATE that leaves a TOASTed value (text
    stored out of line, > ~2 KB after compression) unchanged is decoded without that value, and
    Debezium writes `__debezium_unavailable_value` (the connector's `unavailable.value.placeholder`,
    scripts/stack/stack.py) in its place. Any string column can carry it, on any captured table
    whose identity is DEFAULT in the customer's database: staging cannot know which.

    `cdc_unavailable_filled(current_state, raw_table, pk)` takes a current-state relation
    (`cdc_current_state` of `raw_table`) and returns the same columns, every string column of the
    raw table with the placeholder replaced by the key's previous real value: the value of its
    latest change (create, snapshot read or update; ordered like `cdc_current_state`: lsn, ts_ms,
    offset) that carried the column. When no such change exists, or that change carried a null
    (so the value the update left unchanged never reached raw: the connector started after it, or
    the topic lost it), the value is null, never the placeholder, and `unavailable_columns` names
    the columns (comma-separated; null when every value is known).

    Only keys with a placeholder in raw read their history (found by a filter over the raw
    table, so the current state is computed once, not materialized for a second reader).
-#}
{% macro debezium_placeholder() -%}
'__debezium_unavailable_value'
{%- endmacro %}


{% macro cdc_unavailable_filled(current_state, raw_table, pk) -%}
{%- set src = source('raw', raw_table) -%}
{%- set ph = debezium_placeholder() -%}
{%- set columns = [] -%}
{%- if execute -%}
    {%- for col in adapter.get_columns_in_relation(src) -%}
        {%- if col.is_string() and not col.name.startswith('_') and col.name != pk -%}
            {%- do columns.append(col.name) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif -%}
{%- if not columns %}
select cs.*, cast(null as varchar) as unavailable_columns
from {{ current_state }} as cs
{%- else %}
select
    cs.* replace (
        {%- for c in columns %}
        case when cs.{{ c }} = {{ ph }} then prev.{{ c }} else cs.{{ c }} end as {{ c }}
        {{- "," if not loop.last }}
        {%- endfor %}
    ),
    nullif(concat_ws(','
        {%- for c in columns %},
        case when cs.{{ c }} = {{ ph }} and prev.{{ c }} is null then '{{ c }}' end
        {%- endfor %}
    ), '') as unavailable_columns
from {{ current_state }} as cs
left join (
    select
        {{ pk }} as _unavailable_pk,
        {%- for c in columns %}
        arg_max_null(
            {{ c }}, [coalesce(_source_lsn, -1), coalesce(_source_ts_ms, -1), _offset]
        ) filter (where {{ c }} is distinct from {{ ph }}) as {{ c }}
        {{- "," if not loop.last }}
        {%- endfor %}
    from {{ src }}
    where
        _op in ('c', 'r', 'u')
        and not coalesce(_is_tombstone, false)
        and {{ pk }} in (
            select {{ pk }} from {{ src }}
            where {% for c in columns %}{{ c }} = {{ ph }}{{ " or " if not loop.last }}{% endfor %}
        )
    group by 1
) as prev on prev._unavailable_pk = cs.{{ pk }}
{%- endif %}
{%- endmacro %}
