-- One row: the run's `as_of` and every numeric setting of the settings seed as a column of its
-- own name. Every rule reads its windows and tolerances from here, and the lifecycle (Python)
-- reads the same `as_of`, so one run has one time.
--
-- `as_of` comes from the run context (macros/run_context.sql: the table the Dagster asset writes
-- before dbt starts, a `--vars` override, else now). The settings are pivoted generically: a new
-- numeric row in the seed is a new column here without an edit; settings whose value is not a
-- number (a text) are left to the models that read the seed itself, and so are the rows that
-- qualify a setting (any column beside setting, value and description filled in, e.g. a
-- per-currency tolerance): the pivot takes a setting's default row only.
--
-- The pivot's columns are named explicitly (the seed's numeric settings, read when the model is
-- compiled), so the model keeps its shape when it reads no rows (`dbt build --empty`).
{%- set qualifiers = [] %}
{%- set names = [] %}
{%- if execute and model.resource_type != 'unit_test' %}
    {%- set seed = ref('recon_settings') %}
    {%- set seed_table = adapter.get_relation(
        database=seed.database, schema=seed.schema, identifier=seed.identifier
    ) %}
    {%- for column in adapter.get_columns_in_relation(seed) %}
        {%- if column.column | lower not in ['setting', 'value', 'description'] %}
            {%- do qualifiers.append(
                " and nullif(trim(cast(\"" ~ column.column ~ "\" as varchar)), '') is null"
            ) %}
        {%- endif %}
    {%- endfor %}
    {%- if seed_table is not none %}
        {%- set found = run_query(
            "select distinct setting from " ~ seed_table
            ~ " where try_cast(value as decimal(18, 4)) is not null" ~ (qualifiers | join(''))
            ~ " order by 1"
        ) %}
        {%- for row in found.rows %}{% do names.append(row[0]) %}{% endfor %}
    {%- endif %}
{%- endif %}

with numeric_settings as (
    select
        setting,
        try_cast(value as decimal(18, 4)) as numeric_value
    from {{ ref('recon_settings') }}
    where
        try_cast(value as decimal(18, 4)) is not null{{ qualifiers | join('') }}  -- noqa: LT02
),

-- noqa: disable=all
settings as (
    pivot numeric_settings on setting
    {%- if names %} in ({% for n in names %}'{{ n }}'{{ ", " if not loop.last }}{% endfor %}){% endif %}
    using max(numeric_value)
)
-- noqa: enable=all

select
    {{ run_as_of() }} as as_of,
    settings.*  -- noqa: AM04
from settings
