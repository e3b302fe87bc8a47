{%- set full = returns_incremental(key='return_key', kind='return') %}

-- One row per returned product on a return (channel lines, ERP return lines and WMS receipts
-- matched by ERP product code).
select
    cast(return_line_key as varchar) as return_line_key,
    cast(return_key as varchar) as return_key,
    cast(rma_number as varchar) as rma_number,
    cast(erp_return_line_id as bigint) as erp_return_line_id,
    cast(sku as varchar) as sku,
    cast(channel_sku as varchar) as channel_sku,
    cast(channel_line_id as varchar) as channel_line_id,
    cast(is_sku_mapped as boolean) as is_sku_mapped,
    cast(lot as varchar) as lot,
    cast(serial as varchar) as serial,
    cast(qty_requested as decimal(12, 3)) as qty_requested,
    cast(qty_authorized as decimal(12, 3)) as qty_authorized,
    cast(qty_received as decimal(12, 3)) as qty_received,
    cast(qty_inspected as decimal(12, 3)) as qty_inspected,
    cast(reason as varchar) as reason,
    cast(reason_raw as varchar) as reason_raw,
    cast(unit_price as decimal(18, 4)) as unit_price,
    cast(currency as varchar) as currency,
    cast(warehouse as varchar) as warehouse,
    cast(source_system as varchar) as source_system,
    cast(source_record_id as varchar) as source_record_id,
    cast(source_position as varchar) as source_position,
    cast(source_changed_at as timestamp with time zone) as source_changed_at
from {{ ref('int_return_lines_matched') }}
where {{ in_touched('return_key', 'return', full) }}
