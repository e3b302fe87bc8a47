-- ERP customer return shipments (Tryton stock_shipment_out_return), current state per id.
with current_state as (
    {{ cdc_current_state('erp_stock_shipment_out_return', 'id') }}
),

filled as (
    {{ cdc_unavailable_filled('current_state', 'erp_stock_shipment_out_return', 'id') }}
)

select
    id as shipment_id,
    number as shipment_number,
    trim(reference) as reference,
    warehouse as warehouse_id,
    state,
    effective_date,
    _position as source_position,
    _changed_at as source_changed_at,
    unavailable_columns
from filled
