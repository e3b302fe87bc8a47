{%- set full = returns_incremental(condition='rma_number_touched_condition()') %}

-- Money facts per return line for the report's goods at risk (DESIGN §11), one row per (RMA,
-- ERP product): the line's currency and unit price, and its last inspection, the date a
-- company-currency goods figure is converted at.
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns' RMAs are
-- recomputed (an RMA number normalizes to its return's rma_normalized, so the rows of a
-- touched return are found whatever RMA number it showed before).
with

inspections as (
    select
        return_line_key,
        max(decided_at) as last_inspected_at
    from {{ ref('dispositions') }}
    where return_line_key is not null and {{ in_touched('return_key', 'return', full) }}
    group by return_line_key
)

select
    lines.rma_number,
    lines.sku,
    min(lines.currency) as currency,
    cast(max(lines.unit_price) as decimal(18, 4)) as unit_price,
    cast(max(inspections.last_inspected_at) as timestamp with time zone) as last_inspected_at
from {{ ref('return_lines') }} as lines
left join inspections on inspections.return_line_key = lines.return_line_key
where
    lines.rma_number is not null and lines.sku is not null
    and {{ in_touched('lines.return_key', 'return', full) }}
group by lines.rma_number, lines.sku
