{#-
    Incremental staging of file sources (issue 24): a file-drop staging model is a table that a
    build updates in place, recomputing only the keys with a raw row landed since its last build.

    Each such model carries `_last_ingested_at` (the newest `_ingested_at` of its key's raw rows);
    its newest value in the model's own table is the watermark. On an incremental build
    `landed_since_last_build` keeps the raw rows of every key with a row landed after the
    watermark (all rows of those keys, whenever they landed), so the model's "latest version wins"
    and dedup rules see exactly what a full build sees for those keys: late and out-of-order rows
    change the result the same way. The model is `incremental_strategy='delete+insert'` on that
    key, so the rows of untouched keys are never rewritten and no view is created. Landing never
    overlaps a build (DuckDB's single writer) and stamps its rows with its own start time, so a
    row landed after a build has a later stamp than every row that build saw.
-#}

{#- `is_incremental()`, false in a unit test (whose `this` is none when called from a macro). -#}
{% macro staging_is_incremental() -%}
    {{ return(execute and model.resource_type != 'unit_test' and is_incremental()) }}
{%- endmacro %}


{#- `key_expr in (the keys of raw_table with a row landed since this model's last build)`; `true`
    on a full build. `key_expr` is evaluated on the raw table's rows. -#}
{% macro landed_since_last_build(raw_table, key_expr) -%}
    {%- if staging_is_incremental() -%}
({{ key_expr }} in (
        select {{ key_expr }}
        from {{ source('raw', raw_table) }}
        where _ingested_at > (
            select coalesce(max(_last_ingested_at), '1970-01-01 00:00:00+00'::timestamptz)
            from {{ this }}
        )
    ))
    {%- else -%}
true
    {%- endif -%}
{%- endmacro %}


{#- The same for a model derived from another incremental staging model that has
    `_last_ingested_at` (a `where` on that model's rows): its rows recomputed since this model's
    last build. -#}
{% macro changed_since_last_build() -%}
    {%- if staging_is_incremental() -%}
(_last_ingested_at > (
        select coalesce(max(_last_ingested_at), '1970-01-01 00:00:00+00'::timestamptz)
        from {{ this }}
    ))
    {%- else -%}
true
    {%- endif -%}
{%- endmacro %}


{#- Post-hook of a child model built by delete+insert on its parent's key: a parent whose list of
    children became empty inserts no row, so its old rows are deleted here. -#}
{% macro delete_childless(parent, parent_key, list_column) -%}
delete from {{ this }}
where {{ parent_key }} in (
    select {{ parent_key }} from {{ parent }} where coalesce(len({{ list_column }}), 0) = 0
)
{%- endmacro %}

