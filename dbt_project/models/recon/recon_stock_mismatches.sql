-- Rules receipt_not_posted, posted_qty_mismatch, disposition_mismatch (DESIGN §5), at the grain
-- (return line, ERP disposition location):
--   inspected quantity: WMS inspections of the line's receipts, at the location the disposition
--     map and the receiving warehouse give (marts.dispositions.location_code);
--   posted quantity: `done` ERP stock moves whose origin is the line, into that location, less
--     those out of it (marts.inventory_adjustments; only disposition locations count, not e.g.
--     the input dock).
-- Sign convention: qty_delta = actual (ERP) - expected (WMS); amount_delta values it at the
-- line's unit price.
-- Incremental on the return (macros/recon_incremental.sql): the lines of the returns in scope.
{%- set full = recon_incremental() %}
with

run as (
    select * from {{ ref('recon_run') }}
),

lines as (
    select * from {{ ref('return_lines') }}
    where {{ in_recon_scope('return_key', full) }}
),

disposition_suffixes as (
    select distinct location_suffix from {{ ref('disposition_map') }}
),

inspected as (
    select
        return_line_key,
        location_code as location,
        sum(quantity) as inspected_qty,
        max(decided_at) as last_inspected_at
    from {{ ref('dispositions') }}
    where
        return_line_key is not null and location_code is not null
        and {{ 'true' if full else 'return_line_key in (select lines.return_line_key from lines)' }}
    group by return_line_key, location_code
),

-- net of the line's moves out of a location (a write-back internal move from the wrong place,
-- DESIGN §6, carries the return line as origin too): what the ERP still holds there
line_moves as (
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
),

posted as (
    select
        return_line_key,
        location,
        greatest(sum(quantity), 0) as posted_qty
    from line_moves
    where
        return_line_key is not null
        and {{ 'true' if full else 'return_line_key in (select lines.return_line_key from lines)' }}
        and regexp_extract(location, '-([^-]+)$', 1) in (
            select disposition_suffixes.location_suffix from disposition_suffixes
        )
    group by return_line_key, location
),

positions as (
    select
        coalesce(i.return_line_key, p.return_line_key) as return_line_key,
        coalesce(i.location, p.location) as location,
        coalesce(i.inspected_qty, 0) as inspected_qty,
        i.last_inspected_at,
        coalesce(p.posted_qty, 0) as posted_qty
    from inspected as i
    full outer join posted as p
        on p.return_line_key = i.return_line_key and p.location = i.location
),

judged as (
    select
        case
            when
                positions.inspected_qty > 0
                and positions.posted_qty = 0
                and positions.last_inspected_at + interval 1 hour * run.posting_grace_h <= run.as_of
                then 'receipt_not_posted'
            when
                positions.inspected_qty > 0
                and positions.posted_qty > 0
                and positions.inspected_qty <> positions.posted_qty
                and positions.last_inspected_at + interval 1 hour * run.posting_grace_h <= run.as_of
                then 'posted_qty_mismatch'
            when positions.posted_qty > 0 and positions.inspected_qty = 0
                then 'disposition_mismatch'
        end as rule,
        lines.return_key,
        lines.rma_number,
        -- the ERP product; while it is unknown (its CDC record not landed yet) the ERP line, so
        -- two such lines of one return never share a mismatch id
        coalesce(lines.sku, 'erp_line:' || lines.erp_return_line_id) as sku,
        regexp_replace(positions.location, '-[^-]+$', '') as warehouse,
        positions.location,
        positions.inspected_qty,
        positions.posted_qty,
        lines.unit_price,
        run.as_of
    from positions
    inner join lines
        on lines.return_line_key = positions.return_line_key
    cross join run
)

select
    rule,
    rma_number,
    sku,
    warehouse,
    location,
    cast(inspected_qty as varchar) as expected,
    cast(posted_qty as varchar) as actual,
    cast((posted_qty - inspected_qty) * unit_price as decimal(18, 4)) as amount_delta,
    cast(posted_qty - inspected_qty as decimal(18, 3)) as qty_delta,
    as_of as detected_at,
    return_key
from judged
where rule is not null
