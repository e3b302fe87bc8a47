{%- set full = returns_incremental(condition='dispositions_touched_condition()') %}

-- WMS inspections with their receipt's return line, the canonical disposition (disposition_map
-- seed) and the ERP location the units must be posted to: `<ERP warehouse code>-<suffix>`.
with inspections as (
    select * from {{ ref('stg_wms__inspections') }}
    where
        not is_deleted
        and (
            {{ in_touched('receipt_id', 'receipt', full) }}
            or {{ in_touched('inspection_id', 'inspection', full) }}
        )
),

receipts as (
    select * from {{ ref('int_receipts_linked') }}
),

dispositions as (
    select * from {{ ref('disposition_map') }} where source_system = 'wms'
)

select
    inspections.inspection_id,
    inspections.receipt_id,
    receipts.return_key,
    receipts.return_line_key,
    receipts.dc_code,
    receipts.warehouse,
    receipts.sku,
    inspections.grade,
    inspections.disposition_code as disposition_raw,
    dispositions.disposition,
    case
        when receipts.warehouse is not null and dispositions.location_suffix is not null
            then receipts.warehouse || '-' || dispositions.location_suffix
    end as location_code,
    inspections.quantity,
    inspections.inspected_at,
    inspections.source_position,
    inspections.source_changed_at
from inspections
left join receipts on receipts.receipt_id = inspections.receipt_id
left join dispositions on upper(dispositions.source_code) = inspections.disposition_code
