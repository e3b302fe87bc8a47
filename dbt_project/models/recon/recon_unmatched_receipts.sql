-- Rule unmatched_receipt (DESIGN §5): a WMS receipt that links to no return (marts.receipts
-- with a null return_key) and is unmatched_receipt_grace_h old. Reported as the scanned RMA
-- upper-cased and trimmed (null when none was scanned) and the ERP product; one row per
-- (scanned RMA, product, warehouse) with the quantity received.
with

run as (
    select * from {{ ref('recon_run') }}
),

unmatched as (
    select
        nullif(upper(trim(receipts.rma_number_scanned)), '') as rma_number,
        receipts.sku,
        coalesce(receipts.warehouse, receipts.dc_code) as warehouse,
        receipts.quantity,
        run.as_of
    from {{ ref('receipts') }} as receipts
    cross join run
    where
        receipts.return_key is null
        and receipts.received_at + interval 1 hour * run.unmatched_receipt_grace_h <= run.as_of
)

select
    'unmatched_receipt' as rule,
    rma_number,
    sku,
    warehouse,
    cast(null as varchar) as location,
    'linked return' as expected,
    'none' as actual,
    cast(null as decimal(18, 4)) as amount_delta,
    cast(sum(quantity) as decimal(18, 3)) as qty_delta,
    as_of as detected_at
from unmatched
group by rma_number, sku, warehouse, as_of
