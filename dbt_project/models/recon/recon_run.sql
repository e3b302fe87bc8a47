-- One row: the run's `as_of` (the dbt var, default now) and the settings seed pivoted to columns.
-- Every rule reads its windows and the tolerance from here, and the lifecycle (Python) reads the
-- same `as_of`, so one run has one time.
{%- set as_of = var('as_of', none) %}

select
    {% if as_of -%}
        cast('{{ as_of }}' as timestamp with time zone)
    {%- else -%}
        cast(get_current_timestamp() as timestamp with time zone)
    {%- endif %} as as_of,
    max(case when setting = 'posting_grace_h' then value end) as posting_grace_h,
    max(case when setting = 'credit_grace_h' then value end) as credit_grace_h,
    max(case when setting = 'receipt_after_credit_grace_h' then value end)
        as receipt_after_credit_grace_h,
    max(case when setting = 'stale_return_h' then value end) as stale_return_h,
    max(case when setting = 'unmatched_receipt_grace_h' then value end)
        as unmatched_receipt_grace_h,
    max(case when setting = 'amount_tolerance' then value end) as amount_tolerance
from {{ ref('recon_settings') }}
