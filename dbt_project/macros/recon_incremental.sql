{#-
    Incremental reconciliation rules, keyed on the return (issue 24).

    A rule model whose every row belongs to one return (its `return_key` column) starts with

        {%- set full = recon_incremental() %}

    and filters its inputs with `in_recon_scope('<table>.return_key', full)`. It is then an
    incremental table: each build deletes the rows of the returns in `recon.recon_touched` (all
    rows when the scope is `full`) and inserts them recomputed from the marts. `recon_touched`
    is the returns the new raw rows touched (`intermediate.int_returns_touched`, the marts'
    scope) plus the returns *due*: those with an event time (approval, a refund or credit note,
    an inspection) whose grace window ends between the previous build's `as_of` and this one's,
    so a rule that waits for a window flips as it would in a full build. The scope is `full`
    when the marts' scope is, on the first build, when a rule model has no recorded state, and
    when the settings seed or a rule model's SQL changed (the fingerprint below).

    Every row's `detected_at` is the run's `as_of`, as in a full build: a post-hook sets it on
    the rows kept from earlier builds too. The rule models are in the marts' watermark set
    (`returns_incremental_models()`), so a rule build that failed keeps its older watermark and
    the next scope starts from it: nothing touched in between is missed.

    A rule whose rows do not belong to one return (recon_unmatched_receipts: receipts linked to
    no return, grouped by scanned RMA) stays a plain table; it reads few rows.
-#}
{% macro recon_incremental() -%}
    {{- config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='sync_all_columns',
        pre_hook="{{ delete_recon_scope() }}",
        post_hook=[
            "{{ record_returns_watermark() }}",
            "{{ record_recon_state() }}",
            "{{ refresh_detected_at() }}",
        ],
    ) -}}
    {%- set scope = ref('recon_touched') -%}
    {{ return(recon_scope_is_full()) }}
{%- endmacro %}


{#- The rule models built this way (their names): the models that depend on recon_touched. -#}
{% macro recon_incremental_models() -%}
    {%- set found = [] -%}
    {%- if execute -%}
        {%- for node in graph.nodes.values() | sort(attribute='name')
                if node.resource_type == 'model'
                and 'model.returnsync.recon_touched' in node.depends_on.nodes -%}
            {%- do found.append(node.name) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(found) }}
{%- endmacro %}


{#- Per rule model: the as_of and fingerprint of its last build (rebuildable bookkeeping). -#}
{% macro recon_state_table() -%}
    {{ return(api.Relation.create(database=target.database, schema='intermediate', identifier='_recon_state')) }}
{%- endmacro %}


{% macro create_recon_state_table() -%}
create schema if not exists {{ api.Relation.create(database=target.database, schema='intermediate').include(identifier=false) }};
create table if not exists {{ recon_state_table() }} (
    model varchar primary key,
    as_of timestamptz,
    fingerprint varchar,
    recorded_at timestamptz
)
{%- endmacro %}


{#-
    What the rules' results depend on besides the marts and as_of: the settings seed's rows and
    the SQL of recon_run, recon_touched and the incremental rule models (a changed rule
    recomputes every return). A SQL expression (reads the seed when it runs).
-#}
{% macro recon_fingerprint_sql() -%}
    {%- set checksums = [] -%}
    {%- if execute -%}
        {%- for node in graph.nodes.values() | sort(attribute='name')
                if node.resource_type == 'model'
                and (node.name in ['recon_run', 'recon_touched']
                    or 'model.returnsync.recon_touched' in node.depends_on.nodes) -%}
            {%- do checksums.append(node.name ~ ':' ~ node.checksum.checksum) -%}
        {%- endfor -%}
    {%- endif -%}
    md5('{{ checksums | join("|") }}' || '#' || coalesce(
        (select string_agg(t::varchar, '|' order by t::varchar) from {{ ref('recon_settings') }} as t), ''
    ))
{%- endmacro %}


{#- Post-hook of a rule model: the as_of and fingerprint it was built with. -#}
{% macro record_recon_state() -%}
{#- this build's as_of and fingerprint, also when its scope was empty (nothing touched or due;
    the scope's own rows carry the same values, read in this build) -#}
insert or replace into {{ recon_state_table() }}
select '{{ this.identifier }}', run.as_of, {{ recon_fingerprint_sql() }}, now()
from {{ ref('recon_run') }} as run
{%- endmacro %}


{#- Post-hook of a rule model: every row is detected at this run's as_of (as a full build's). -#}
{% macro refresh_detected_at() -%}
update {{ this }} set detected_at = (select as_of from {{ ref('recon_run') }})
where detected_at is distinct from (select as_of from {{ ref('recon_run') }})
{%- endmacro %}


{#- True when this build recomputes every row of a rule model (also at parse time). -#}
{% macro recon_scope_is_full() -%}
    {%- if not execute or flags.WHICH not in ['run', 'build', 'retry'] or model.resource_type == 'unit_test'
            or this is none or not is_incremental() -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set scope = ref('recon_touched') -%}
    {%- if scope is none or load_relation(scope) is none -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set result = run_query("select count(*) from " ~ scope ~ " where kind = 'full'") -%}
    {{ return(result.columns[0].values()[0] > 0) }}
{%- endmacro %}


{#- `expr in (the returns in scope)`; `true` when the scope is full. -#}
{% macro in_recon_scope(expr, full) -%}
    {%- if full -%}
        true
    {%- else -%}
        ({{ expr }} in (select return_key from {{ ref('recon_touched') }} where kind = 'return'))
    {%- endif -%}
{%- endmacro %}


{#- Pre-hook of a rule model: delete the rows about to be recomputed. -#}
{% macro delete_recon_scope() -%}
    {%- if is_incremental() -%}
        {%- if recon_scope_is_full() -%}
delete from {{ this }}
        {%- else -%}
delete from {{ this }} where {{ in_recon_scope('return_key', false) }}
        {%- endif -%}
    {%- else -%}
select 1
    {%- endif -%}
{%- endmacro %}
