{%- set full = returns_incremental(condition='dispositions_touched_condition()') %}

-- One row per WMS inspection decision, with the ERP location it must be posted to.
select
    {{ surrogate_key('disposition', ['inspection_id']) }} as disposition_key,
    cast(return_line_key as varchar) as return_line_key,
    cast(return_key as varchar) as return_key,
    cast(receipt_id as bigint) as receipt_id,
    cast(inspection_id as bigint) as inspection_id,
    cast(dc_code as varchar) as dc_code,
    cast(warehouse as varchar) as warehouse,
    cast(sku as varchar) as sku,
    cast(grade as varchar) as grade,
    cast(disposition as varchar) as disposition,
    cast(disposition_raw as varchar) as disposition_raw,
    cast(location_code as varchar) as location_code,
    cast(quantity as decimal(12, 3)) as quantity,
    cast(inspected_at as timestamp with time zone) as decided_at,
    'wms' as source_system,
    cast(inspection_id as varchar) as source_record_id,
    cast(source_position as varchar) as source_position,
    cast(source_changed_at as timestamp with time zone) as source_changed_at
from {{ ref('int_dispositions_mapped') }}
where
    {{ in_touched('receipt_id', 'receipt', full) }}
    or {{ in_touched('inspection_id', 'inspection', full) }}
