-- What the write-back planner needs (DESIGN §6) for each mismatch of this run whose rule has an
-- automatic fix (rule_catalog.auto_fix_action), one row per (mismatch, ERP return line):
--   stock rules: the return's ERP lines of the mismatch's product, with the inspected and posted
--     quantities at the mismatch's location and, for disposition_mismatch, the location of the
--     same line where the ERP holds fewer units than the warehouse inspected (where to move to);
--   credit rules: every ERP line of the return with its authorized, credited quantity and price,
--     the channel refund and the ERP credit of the return in the refund's currency;
--   both: the return order's party, and the ERP's own documents of the line that are not
--     finished yet (an unfinished customer return shipment, a draft credit note), as CDC shows
--     them; the ERP adapter looks again before it acts.
-- A mismatch without an ERP return line still has one row (line columns null), so the planner
-- can say why it cannot be fixed. Not published to analysts (pipelines/lib/publish.py): it holds
-- ERP party ids.
-- Every fact below is read for the fixable mismatches' returns and lines only (`fixable_returns`,
-- `fixable_lines`), so a build costs what is open, not the whole history.
with

run as (
    select * from {{ ref('recon_run') }}
),

fixable as (
    select
        m.mismatch_id,
        m.rule,
        c.family,
        c.auto_fix_action,
        m.rma_number,
        m.sku,
        m.warehouse,
        m.location,
        m.qty_delta,
        m.amount_delta
    from {{ ref('recon_mismatches_current') }} as m
    inner join {{ ref('rule_catalog') }} as c on c.rule = m.rule
    where c.auto_fix_action is not null
),

fixable_returns as materialized (
    select distinct r.return_key, r.erp_return_order_id
    from {{ ref('returns') }} as r
    where r.rma_number in (select f.rma_number from fixable as f)
),

fixable_lines as materialized (
    select l.return_line_key, l.erp_return_line_id
    from {{ ref('return_lines') }} as l
    where l.return_key in (select fr.return_key from fixable_returns as fr)
),

tolerances as (
    select
        currency,
        try_cast(value as decimal(18, 4)) as amount_tolerance
    from {{ ref('recon_settings') }}
    where setting = 'amount_tolerance'
),

channel_refunds as (
    select
        return_key,
        min(currency) as currency,
        sum(amount) as amount
    from {{ ref('credits') }}
    where
        is_channel_refund and amount > 0 and return_key is not null
        and return_key in (select fr.return_key from fixable_returns as fr)
    group by return_key
),

erp_credits as (
    select
        return_key,
        currency,
        sum(amount) as amount
    from {{ ref('credits') }}
    where
        system = 'erp' and not coalesce(is_channel_refund, false) and return_key is not null
        and return_key in (select fr.return_key from fixable_returns as fr)
    group by return_key, currency
),

credited_lines as (
    select
        return_line_key,
        sum(abs(quantity)) as quantity
    from {{ ref('credits') }}
    where
        system = 'erp' and return_line_key is not null and quantity is not null
        and return_line_key in (select fl.return_line_key from fixable_lines as fl)
    group by return_line_key
),

inspected as (
    select
        return_line_key,
        location_code as location,
        sum(quantity) as quantity
    from {{ ref('dispositions') }}
    where
        return_line_key is not null and location_code is not null
        and return_line_key in (select fl.return_line_key from fixable_lines as fl)
    group by return_line_key, location_code
),

-- what the ERP holds per (line, location): moves of the line in, less those out
posted as (
    select
        return_line_key,
        location,
        greatest(sum(quantity), 0) as quantity
    from (
        select
            return_line_key,
            location,
            abs(quantity) as quantity
        from {{ ref('inventory_adjustments') }}
        union all
        select
            return_line_key,
            from_location as location,
            -abs(quantity) as quantity
        from {{ ref('inventory_adjustments') }}
        where from_location is not null
    ) as line_moves
    where
        return_line_key is not null
        and return_line_key in (select fl.return_line_key from fixable_lines as fl)
    group by return_line_key, location
),

short_places as (
    select
        i.return_line_key,
        i.location,
        i.quantity - coalesce(p.quantity, 0) as short_qty,
        row_number() over (
            partition by i.return_line_key
            order by i.quantity - coalesce(p.quantity, 0) desc, i.location
        ) as rn
    from inspected as i
    left join posted as p
        on p.return_line_key = i.return_line_key and p.location = i.location
    where i.quantity > coalesce(p.quantity, 0)
),

open_shipments as (
    select
        moves.origin_sale_line_id as sale_line_id,
        min(try_cast(split_part(moves.shipment, ',', 2) as bigint)) as shipment_id
    from {{ ref('stg_erp__stock_moves') }} as moves
    where
        not moves.is_deleted
        and moves.shipment like 'stock.shipment.out.return,%'
        and moves.state in ('staging', 'draft')
        and moves.origin_sale_line_id is not null
        and moves.origin_sale_line_id in (select fl.erp_return_line_id from fixable_lines as fl)
    group by moves.origin_sale_line_id
),

draft_credit_notes as (
    select
        lines.origin_sale_line_id as sale_line_id,
        min(invoices.invoice_id) as invoice_id
    from {{ ref('stg_erp__invoice_lines') }} as lines
    inner join {{ ref('stg_erp__invoices') }} as invoices
        on invoices.invoice_id = lines.invoice_id
    where
        not lines.is_deleted
        and not invoices.is_deleted
        and invoices.invoice_type = 'out'
        and invoices.state in ('draft', 'validated')
        and lines.origin_sale_line_id is not null
        and lines.origin_sale_line_id in (select fl.erp_return_line_id from fixable_lines as fl)
    group by lines.origin_sale_line_id
),

parties as (
    select
        sales.sale_id,
        sales.party_id,
        p.party_code
    from {{ ref('stg_erp__sales') }} as sales
    left join {{ ref('stg_erp__parties') }} as p on p.party_id = sales.party_id
    where
        not sales.is_deleted
        and sales.sale_id in (select fr.erp_return_order_id from fixable_returns as fr)
)

select
    cast(f.mismatch_id as varchar) as mismatch_id,
    cast(f.rule as varchar) as rule,
    cast(f.auto_fix_action as varchar) as auto_fix_action,
    cast(f.rma_number as varchar) as rma_number,
    cast(f.sku as varchar) as sku,
    cast(f.warehouse as varchar) as warehouse,
    cast(f.location as varchar) as location,
    cast(f.qty_delta as decimal(18, 3)) as qty_delta,
    cast(f.amount_delta as decimal(18, 4)) as amount_delta,
    cast(r.return_key as varchar) as return_key,
    cast(r.erp_return_order_id as bigint) as erp_return_order_id,
    cast(pa.party_id as bigint) as party_id,
    cast(pa.party_code as varchar) as party_code,
    cast(coalesce(cr.currency, r.currency) as varchar) as currency,
    cast(cr.amount as decimal(18, 4)) as channel_refund,
    cast(ec.amount as decimal(18, 4)) as erp_credit,
    cast(coalesce(t.amount_tolerance, d.amount_tolerance, run.amount_tolerance) as decimal(18, 4))
        as amount_tolerance,
    cast(l.return_line_key as varchar) as return_line_key,
    cast(l.erp_return_line_id as bigint) as erp_return_line_id,
    cast(l.sku as varchar) as line_sku,
    cast(abs(l.qty_authorized) as decimal(12, 3)) as qty_authorized,
    cast(coalesce(cl.quantity, 0) as decimal(38, 3)) as qty_credited,
    cast(l.unit_price as decimal(18, 4)) as unit_price,
    cast(l.currency as varchar) as line_currency,
    cast(coalesce(i.quantity, 0) as decimal(38, 3)) as qty_inspected,
    cast(coalesce(p.quantity, 0) as decimal(38, 3)) as qty_posted,
    cast(s.location as varchar) as move_to_location,
    cast(s.short_qty as decimal(38, 3)) as move_to_short_qty,
    cast(os.shipment_id as bigint) as open_return_shipment_id,
    cast(dc.invoice_id as bigint) as draft_credit_note_id
from fixable as f
left join {{ ref('returns') }} as r on r.rma_number = f.rma_number
left join {{ ref('return_lines') }} as l
    on
        l.return_key = r.return_key
        and l.erp_return_line_id is not null
        and l.sku is not null
        and (f.family <> 'stock' or l.sku = f.sku)
left join channel_refunds as cr on cr.return_key = r.return_key
left join erp_credits as ec on ec.return_key = r.return_key and ec.currency = cr.currency
left join tolerances as t on t.currency = coalesce(cr.currency, r.currency)
left join tolerances as d on d.currency is null
left join credited_lines as cl on cl.return_line_key = l.return_line_key
left join inspected as i on i.return_line_key = l.return_line_key and i.location = f.location
left join posted as p on p.return_line_key = l.return_line_key and p.location = f.location
left join short_places as s on s.return_line_key = l.return_line_key and s.rn = 1
left join open_shipments as os on os.sale_line_id = l.erp_return_line_id
left join draft_credit_notes as dc on dc.sale_line_id = l.erp_return_line_id
left join parties as pa on pa.sale_id = r.erp_return_order_id
cross join run
