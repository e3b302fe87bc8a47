{#-
    The run context: what the run that starts dbt tells it, in a table rather than a `--vars`
    value (a changed var makes dbt re-parse the whole project; a table row does not).

    `recon.run_context` (one row: `as_of`, `run_id`, `written_at`) is written by the Dagster dbt
    asset right before it invokes dbt (pipelines/dbt.py `write_run_context`). It is not a dbt
    model: dbt only reads it. A `--vars '{"as_of": ...}'` still wins when given (dbt run by hand,
    unit tests), and without either the time is now.
-#}

{% macro run_context_relation() -%}
    {{ return(api.Relation.create(database=target.database, schema='recon', identifier='run_context')) }}
{%- endmacro %}


{#- The run's `as_of` as a SQL expression of type timestamptz. -#}
{% macro run_as_of() -%}
    {%- set override = var('as_of', none) -%}
    {%- if override -%}
        cast('{{ override }}' as timestamp with time zone)
    {%- elif execute and model.resource_type != 'unit_test' and load_relation(run_context_relation()) is not none -%}
        coalesce(
            (select max(as_of) from {{ run_context_relation() }}),
            cast(get_current_timestamp() as timestamp with time zone)
        )
    {%- else -%}
        cast(get_current_timestamp() as timestamp with time zone)
    {%- endif -%}
{%- endmacro %}
