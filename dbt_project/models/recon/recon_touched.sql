{{
    config(
        materialized='table',
        pre_hook="{{ create_recon_state_table() }}",
    )
}}
-- depends_on: {{ ref('int_returns_touched') }}
-- depends_on: {{ ref('recon_settings') }}
-- depends_on: {{ ref('returns') }}
-- depends_on: {{ ref('credits') }}
-- depends_on: {{ ref('dispositions') }}

-- The returns whose reconciliation this build recomputes (macros/recon_incremental.sql): one row
-- per return (`kind` return, its `return_key`, `reason` touched or due), or one `full` row when
-- every return is recomputed. Every row carries the run's as_of and the fingerprint the rule
-- models record after their build.
--
--   touched: the marts recomputed it (intermediate.int_returns_touched, kind return);
--   due:     one of its event times plus a grace window of the settings (every `*_h` setting)
--            lies between the as_of of the rule models' last builds and this build's as_of, so
--            a rule that waits for that window may have changed its mind. The event times are
--            the ones the rules compare with as_of (DESIGN §5): the approval, refunds and credit
--            notes, and inspections. A new rule that compares another time with as_of adds it
--            to `event_times`.
--
-- noqa: disable=LT02
{%- set reason = namespace(full=none, low=none, high=none) %}
{%- set windows = [] %}
{%- set fingerprint = namespace(value='') %}
{%- set building = execute and flags.WHICH in ['run', 'build', 'retry'] %}
{%- if building %}
    {%- set models = recon_incremental_models() %}
    {%- set fingerprint.value = run_query('select ' ~ recon_fingerprint_sql()).columns[0].values()[0] %}
    {%- for column in adapter.get_columns_in_relation(ref('recon_run')) %}
        {%- if column.column | lower != 'as_of' and (column.column | lower).endswith('_h') %}
            {%- do windows.append(column.column) %}
        {%- endif %}
    {%- endfor %}
    {%- set touched = run_query(
        "select count(*) from " ~ ref('int_returns_touched') ~ " where kind = 'full'"
    ).columns[0].values()[0] %}
    {%- if touched > 0 %}
        {%- set reason.full = 'the marts were recomputed in full' %}
    {%- elif adapter.get_relation(
            database=target.database, schema='intermediate', identifier='_recon_state'
        ) is none %}
        {%- set reason.full = 'no rule state yet' %}
    {%- else %}
        {%- set state = run_query(
            "select count(distinct model), count(distinct fingerprint), min(fingerprint), "
            ~ "min(as_of)::varchar, max(as_of)::varchar from " ~ recon_state_table()
            ~ " where model in ('" ~ models | join("', '") ~ "')"
        ).rows[0] %}
        {%- if state[0] < models | length %}{% set reason.full = 'a rule model has no state' %}
        {%- elif state[1] != 1 or state[2] != fingerprint.value %}
            {%- set reason.full = 'the settings or a rule changed' %}
        {%- else %}{% set reason.low = state[3] %}{% set reason.high = state[4] %}{% endif %}
    {%- endif %}
{%- else %}
    {%- set reason.full = 'not a build' %}
{%- endif %}
{%- set quoted = [] %}
{%- for w in windows %}{% do quoted.append('settings.' ~ adapter.quote(w)) %}{% endfor %}
{%- set window_columns = quoted | join(', ') if quoted else 'cast(null as double)' %}
-- (LT02 stays off: sqlfluff misreads the indentation around the Jinja branches below)

with

run as (
    select as_of from {{ ref('recon_run') }}
),

{% if reason.full is not none %}
scope as (
    select
        'full' as kind,
        cast(null as varchar) as return_key,
        '{{ reason.full }}' as reason
)
{% else %}
-- the interval of as_of values since the rule models' last builds (as_of may also go back)
since as (
    select
        least(cast('{{ reason.low }}' as timestamptz), run.as_of) as low,
        greatest(cast('{{ reason.high }}' as timestamptz), run.as_of) as high
    from run
),

-- the event times that can be due at all: some window w puts event + w in [low, high] only if
-- the event is in [low - the longest window, high - the shortest] (each table is filtered before
-- the union). None when as_of is where every rule model's last build had it (low = high): no
-- comparison with as_of can have changed (the closed interval then made every event exactly a
-- window before as_of due on every build: the ERP dates credit notes at midnight, so with a fixed
-- as_of 85,000 of 1,000,000 returns were recomputed by every increment)
bounds as (
    select
        since.low - interval 1 hour * greatest({{ window_columns }}) as earliest,
        since.high - interval 1 hour * least({{ window_columns }}) as latest
    from since
    cross join {{ ref('recon_run') }} as settings
    where since.low < since.high
),

event_times as (
    select
        return_key,
        approved_at as event_at
    from {{ ref('returns') }}
    where approved_at between (select earliest from bounds) and (select latest from bounds)
    union all
    select
        return_key,
        issued_at
    from {{ ref('credits') }}
    where
        return_key is not null
        and issued_at between (select earliest from bounds) and (select latest from bounds)
    union all
    select
        return_key,
        decided_at
    from {{ ref('dispositions') }}
    where
        return_key is not null
        and decided_at between (select earliest from bounds) and (select latest from bounds)
),

due as (
    select distinct event_times.return_key
    from event_times
    cross join since
    cross join {{ ref('recon_run') }} as settings
    where
        false
        {%- for w in windows %}
        or event_times.event_at + interval 1 hour * settings.{{ adapter.quote(w) }}
        between since.low and since.high
        {%- endfor %}
),

touched as (
    select
        key as return_key,
        'touched' as reason
    from {{ ref('int_returns_touched') }}
    where kind = 'return'
),

scope as (
    select
        'return' as kind,
        return_key,
        max(reason) as reason
    from (
        select * from touched
        union all
        select
            return_key,
            'due' as reason
        from due
    )
    where return_key is not null
    group by return_key
)
{% endif %}

select
    scope.kind,
    scope.return_key,
    scope.reason,
    run.as_of,
    '{{ fingerprint.value }}' as fingerprint
from scope
cross join run
