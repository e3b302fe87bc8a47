{%- set full = returns_incremental(key='receipt_id', kind='receipt') %}

-- One row per WMS receipt with the return it links to and the rule that linked it.
select
    cast(receipt_id as bigint) as receipt_id,
    cast(return_key as varchar) as return_key,
    cast(return_line_key as varchar) as return_line_key,
    cast(link_rule as varchar) as link_rule,
    cast(dc_code as varchar) as dc_code,
    cast(warehouse as varchar) as warehouse,
    cast(rma_number_scanned as varchar) as rma_number_scanned,
    cast(tracking_number as varchar) as tracking_number,
    cast(sku as varchar) as sku,
    cast(lot as varchar) as lot,
    cast(serial as varchar) as serial,
    cast(quantity as decimal(12, 3)) as quantity,
    cast(received_at as timestamp with time zone) as received_at,
    'wms' as source_system,
    cast(receipt_id as varchar) as source_record_id,
    cast(source_position as varchar) as source_position,
    cast(source_changed_at as timestamp with time zone) as source_changed_at
from {{ ref('int_receipts_linked') }}
where {{ in_touched('receipt_id', 'receipt', full) }}
