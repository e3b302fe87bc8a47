-- The mismatches of this run: the eleven rules of DESIGN §5 in one table, each with a stable
-- mismatch_id (md5 of the rule and its natural key: RMA, product, and the ERP location for the
-- stock rules or the warehouse for unmatched receipts) and the rule's fixed severity.
-- The lifecycle (pipelines/lib/recon/lifecycle.py) merges this table into recon.mismatches.
with

flagged as (
    select * from {{ ref('recon_stock_mismatches') }}
    union all by name
    select * from {{ ref('recon_credit_mismatches') }}
    union all by name
    select * from {{ ref('recon_duplicate_credits') }}
    union all by name
    select * from {{ ref('recon_return_mismatches') }}
    union all by name
    select * from {{ ref('recon_unmatched_receipts') }}
)

select
    md5(concat_ws(
        '|',
        rule,
        coalesce(rma_number, ''),
        coalesce(sku, ''),
        case
            when rule in ('receipt_not_posted', 'posted_qty_mismatch', 'disposition_mismatch')
                then coalesce(location, '')
            when rule = 'unmatched_receipt' then coalesce(warehouse, '')
            else ''
        end
    )) as mismatch_id,
    rule,
    case rule
        when 'refund_without_credit' then 'high'
        when 'credit_amount_mismatch' then 'high'
        when 'currency_mismatch' then 'high'
        when 'duplicate_credit' then 'high'
        when 'credit_without_receipt' then 'high'
        when 'receipt_not_posted' then 'medium'
        when 'posted_qty_mismatch' then 'medium'
        when 'disposition_mismatch' then 'medium'
        when 'unmatched_receipt' then 'medium'
        when 'unmapped_sku' then 'medium'
        when 'stale_return' then 'low'
    end as severity,
    rma_number,
    sku,
    warehouse,
    location,
    expected,
    actual,
    cast(amount_delta as decimal(18, 4)) as amount_delta,
    cast(qty_delta as decimal(18, 3)) as qty_delta,
    cast(detected_at as timestamp with time zone) as detected_at
from flagged
