{#-
    Incremental intermediate and mart models, scoped by the return thread (issue #7).

    `int_returns_touched` (a small table rebuilt on every run) lists what the new raw rows can
    have changed since the last build: the returns (`return_key`, with its `rma_normalized`),
    WMS receipts, WMS inspections and Shopify refunds. The incremental models
    (`returns_incremental_models()`) then delete their rows of that scope (pre-hook
    `delete_touched_scope`) and insert them recomputed from the current upstream tables
    (`incremental_strategy='append'`), so a return whose links changed loses its old rows even when
    it has no rows any more. When the scope is `full` (first build, a model or its watermark
    missing, reference data or a seed changed, a CDC truncate) every row is recomputed, which is
    what `--full-refresh` computes.

    The watermark of each incremental model is the newest `_ingested_at` of the raw tables when
    its build's scope was computed, recorded by its post-hook (`record_returns_watermark`) in the
    same transaction as its rows: a model that failed keeps its older watermark, and the next
    scope starts from the oldest watermark of all of them, so a failed run is caught up. Raw rows
    are stamped when they land and landing never overlaps a build (DuckDB's single writer), so a
    row landed after a build has a later stamp.
-#}

{#-
    The one header of every incremental model, in place of its own `config` (issue 24):

        {%- set full = returns_incremental(key='return_key', kind='return') %}

    configures the model (incremental, `append`, `on_schema_change='fail'`), deletes the rows of
    the touched scope before the insert (`key in` the touched keys of `kind`, or a named
    `condition` macro such as `credits_touched_condition()`), records the watermark after it,
    makes the model depend on `int_returns_touched`, and returns whether this build recomputes
    every row (`returns_scope_is_full()`), which the model's `in_touched(..., full)` filters use.
    `post_hook` adds hooks run after the watermark's (e.g. refreshing columns that depend on the
    run's as_of on the rows kept). A model is added to `returns_incremental_models()` (the
    watermark set) as well.
-#}
{% macro returns_incremental(key=none, kind=none, condition=none, post_hook=[]) -%}
    {%- if condition is none and (key is none or kind is none) -%}
        {{ exceptions.raise_compiler_error("returns_incremental needs key and kind, or a condition") }}
    {%- endif -%}
    {%- set scope = condition if condition is not none
        else "in_touched('" ~ key ~ "', '" ~ kind ~ "', false)" -%}
    {{- config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_touched_scope(" ~ scope ~ ") }}",
        post_hook=["{{ record_returns_watermark() }}"] + post_hook,
    ) -}}
    {%- set touched = ref('int_returns_touched') -%}
    {{ return(returns_scope_is_full()) }}
{%- endmacro %}


{% macro returns_incremental_models() -%}
    {{ return([
        'stg_returns_saas__channel_returns', 'stg_returns_saas__channel_return_lines',
        'stg_amazon__channel_returns', 'stg_amazon__channel_return_lines',
        'stg_b2b__channel_returns', 'stg_b2b__channel_return_lines',
        'int_channel_returns_unioned', 'int_channel_return_lines_unioned',
        'int_return_orders_joined', 'int_return_order_lines_joined',
        'int_returns_linked', 'int_receipts_linked', 'int_dispositions_mapped',
        'int_return_lines_matched', 'int_credits_unioned', 'int_return_stock_moves_joined',
        'returns', 'return_lines', 'receipts', 'dispositions', 'credits',
        'inventory_adjustments', 'return_events', 'return_stage_latencies',
        'recon_return_money', 'recon_line_money',
        'recon_stock_mismatches', 'recon_credit_mismatches', 'recon_duplicate_credits',
        'recon_return_mismatches',
    ]) }}
{%- endmacro %}


{#- The table of watermarks (not a dbt model: it outlives full refreshes of the models). -#}
{% macro returns_state_table() -%}
    {{ return(api.Relation.create(database=target.database, schema='intermediate', identifier='_incremental_state')) }}
{%- endmacro %}


{% macro create_returns_state_table() -%}
create schema if not exists {{ api.Relation.create(database=target.database, schema='intermediate').include(identifier=false) }};
create table if not exists {{ returns_state_table() }} (
    model varchar primary key,
    watermark_at timestamptz,
    fingerprint varchar,
    recorded_at timestamptz
)
{%- endmacro %}


{#-
    Post-hook of an incremental model: its watermark and reference fingerprint. A build that
    touched nothing (`int_returns_touched` empty: nothing new, or nothing that links to a return)
    keeps the model's recorded ones: the rows landed since are read again by the next scope, which
    is what an unchanged watermark means (recording the empty scope's nulls made every increment
    after an idle build recompute everything, as if a seed had changed).
-#}
{% macro record_returns_watermark() -%}
insert or replace into {{ returns_state_table() }}
select
    '{{ this.identifier }}',
    coalesce(max(t.watermark_at), any_value(s.watermark_at)),
    coalesce(max(t.fingerprint), any_value(s.fingerprint)),
    now()
from (select 1) as one
left join {{ ref('int_returns_touched') }} as t on true
left join {{ returns_state_table() }} as s on s.model = '{{ this.identifier }}'
{%- endmacro %}


{#- True when this build must recompute every row of an incremental model (also at parse time). -#}
{% macro returns_scope_is_full() -%}
    {%- if not execute or flags.WHICH not in ['run', 'build', 'retry'] or model.resource_type == 'unit_test'
            or this is none or not is_incremental() -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set touched = ref('int_returns_touched') -%}
    {%- if touched is none or load_relation(touched) is none -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set result = run_query("select count(*) from " ~ touched ~ " where kind = 'full'") -%}
    {{ return(result.columns[0].values()[0] > 0) }}
{%- endmacro %}


{#- `expr in (the touched keys of a kind)`; `true` when the scope is full. -#}
{% macro in_touched(expr, kind, full) -%}
    {%- if full -%}
        true
    {%- elif kind == 'rma' -%}
        ({{ expr }} in (select rma_normalized from {{ ref('int_returns_touched') }} where kind = 'return'))
    {%- elif kind == 'return' -%}
        ({{ expr }} in (select key from {{ ref('int_returns_touched') }} where kind = 'return'))
    {%- else -%}
        ({{ expr }} in (select cast(key as bigint) from {{ ref('int_returns_touched') }} where kind = '{{ kind }}'))
    {%- endif -%}
{%- endmacro %}


{#-
    Pre-hook of an incremental model: delete the rows about to be recomputed (all of them when
    the scope is full). `condition` is written with `in_touched(..., full=false)`.
-#}
{% macro delete_touched_scope(condition) -%}
    {%- if is_incremental() -%}
        {%- if returns_scope_is_full() -%}
delete from {{ this }}
        {%- else -%}
delete from {{ this }} where {{ condition }}
        {%- endif -%}
    {%- else -%}
select 1
    {%- endif -%}
{%- endmacro %}


{#- The scope of the credit rows: a touched return's, and a touched Shopify refund's unlinked rows. -#}
{% macro credits_touched_condition() -%}
    {{ in_touched('return_key', 'return', false) }} or (return_key is null and system = 'shopify' and {{ in_touched('try_cast(external_id as bigint)', 'refund', false) }})
{%- endmacro %}


{#- The scope of rows keyed by RMA number (the recon report's money facts): a touched return's
    (its RMA numbers normalize to its rma_normalized). -#}
{% macro rma_number_touched_condition() -%}
    {{ in_touched(normalize_rma('rma_number'), 'rma', false) }}
{%- endmacro %}


{#- The scope of the disposition rows: a touched receipt's, and a touched inspection's. -#}
{% macro dispositions_touched_condition() -%}
    {{ in_touched('receipt_id', 'receipt', false) }} or {{ in_touched('inspection_id', 'inspection', false) }}
{%- endmacro %}


{#-
    The raw tables, from the dbt graph's `raw` sources (models/staging/_sources.yml, generated
    from the source registry pipelines/lib/contracts.py), never listed by hand: `all` of them,
    the change streams (`cdc`: a truncate there recomputes everything) and the reference files
    (`reference`: any new version recomputes everything). Empty while dbt parses (the graph is
    filled at execution).
-#}
{% macro returns_raw_sources() -%}
    {%- set found = {'all': [], 'cdc': [], 'reference': []} -%}
    {%- if execute -%}
        {%- for node in graph.sources.values() | sort(attribute='name') if node.source_name == 'raw' -%}
            {%- set meta = node.meta or node.config.meta or {} -%}
            {%- do found['all'].append(node.name) -%}
            {%- if meta.get('kind') == 'cdc' -%}
                {%- do found['cdc'].append(node.name) -%}
            {%- elif meta.get('kind') == 'file' and meta.get('source') == 'reference' -%}
                {%- do found['reference'].append(node.name) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(found) }}
{%- endmacro %}


{#-
    Post-hook of marts.return_stage_latencies: the columns that depend on the run's as_of and the
    SLA settings, refreshed on every row that differs (the rows kept from earlier builds), with
    the model's own expressions, so the table is what a full build gives.
-#}
{% macro refresh_stage_latencies_as_of() -%}
update {{ this }} as t
set
    as_of = n.as_of,
    sla_h = n.sla_h,
    open_age_h = n.open_age_h,
    is_late = n.is_late,
    is_overdue = n.is_overdue
from (
    select
        l.stage_latency_key,
        r.as_of,
        s.sla_h,
        cast(
            case when l.ended_at is null then date_diff('second', l.started_at, r.as_of) / 3600.0 end
            as double
        ) as open_age_h,
        coalesce(l.latency_h > s.sla_h, false) as is_late,
        coalesce(
            l.ended_at is null and date_diff('second', l.started_at, r.as_of) >= s.sla_h * 3600, false
        ) as is_overdue
    from {{ this }} as l
    cross join (select cast({{ run_as_of() }} as timestamp with time zone) as as_of) as r
    left join (
        select cast(setting as varchar) as setting, cast(max(value) as double) as sla_h
        from {{ ref('recon_settings') }}
        where starts_with(setting, 'sla_')
        group by setting
    ) as s on s.setting = 'sla_' || l.transition || '_h'
    where l.as_of is distinct from r.as_of or l.sla_h is distinct from s.sla_h
) as n
where t.stage_latency_key = n.stage_latency_key
{%- endmacro %}
