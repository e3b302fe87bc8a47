{#-
    The CDC keys of `raw_table` (primary key `pk`) deleted by a change landed since the watermark
    (`since`, a condition on `_ingested_at`): a delete or a tombstone. Their staging rows are gone
    (a post-hook removes deleted keys), so the change scope (`int_returns_touched`) reads these
    from the raw change log; every other changed key is a staging row recomputed since then.
-#}
{% macro cdc_deleted_since(raw_table, pk, since) -%}
select distinct {{ pk }} from {{ source('raw', raw_table) }}
    where {{ since }} and (_op = 'd' or coalesce(_is_tombstone, false))
{%- endmacro %}
