-- Rule duplicate_credit (DESIGN §5), one row per return line: ERP credit notes credit more of
-- the line than its authorized quantity (|ERP return line quantity|), or Shopify's successful
-- refunds refund more of it than authorized. expected = authorized, actual = the larger of the
-- two credited quantities; qty_delta = actual - expected, amount_delta values it at unit price.
-- Incremental on the return (macros/recon_incremental.sql): the lines of the returns in scope.
{%- set full = recon_incremental() %}
with

erp_credited as (
    select return_line_key, sum(abs(quantity)) as quantity
    from {{ ref('credits') }}
    where
        system = 'erp' and return_line_key is not null and quantity is not null
        and {{ in_recon_scope('return_key', full) }}
    group by return_line_key
),

shopify_refunded as (
    select return_line_key, sum(abs(quantity)) as quantity
    from {{ ref('credits') }}
    where
        system = 'shopify' and is_channel_refund
        and return_line_key is not null and quantity is not null
        and {{ in_recon_scope('return_key', full) }}
    group by return_line_key
),

judged as (
    select
        lines.return_key,
        lines.rma_number,
        lines.sku,
        lines.warehouse,
        lines.qty_authorized,
        lines.unit_price,
        greatest(coalesce(e.quantity, 0), coalesce(s.quantity, 0)) as credited_qty
    from {{ ref('return_lines') }} as lines
    left join erp_credited as e on e.return_line_key = lines.return_line_key
    left join shopify_refunded as s on s.return_line_key = lines.return_line_key
    where lines.qty_authorized is not null and {{ in_recon_scope('lines.return_key', full) }}
)

select
    'duplicate_credit' as rule,
    judged.rma_number,
    judged.sku,
    judged.warehouse,
    cast(null as varchar) as location,
    cast(judged.qty_authorized as varchar) as expected,
    cast(judged.credited_qty as varchar) as actual,
    cast((judged.credited_qty - judged.qty_authorized) * judged.unit_price as decimal(18, 4))
        as amount_delta,
    cast(judged.credited_qty - judged.qty_authorized as decimal(18, 3)) as qty_delta,
    run.as_of as detected_at,
    judged.return_key
from judged
cross join {{ ref('recon_run') }} as run
where judged.credited_qty > judged.qty_authorized
