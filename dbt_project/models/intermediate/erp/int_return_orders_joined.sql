{%- set full = returns_incremental(key='sale_id', kind='sale') %}

-- ERP return orders (DESIGN §8): sale_sale rows whose origin is another sale or that carry a
-- negative line, with their currency and warehouse codes, the original order's reference and the
-- RMA they carry in `reference`, normalized to letters and digits.
-- (only the sales in scope and their lines are read in full; the original orders are looked up)
with sales as (
    select * from {{ ref('stg_erp__sales') }} where not is_deleted
),

sales_in_scope as (
    select * from sales where {{ in_touched('sale_id', 'sale', full) }}
),

lines as (
    select * from {{ ref('stg_erp__sale_lines') }}
    where not is_deleted and {{ in_touched('sale_id', 'sale', full) }}
),

negative as (
    select distinct sale_id from lines where quantity < 0
),

currencies as (
    select * from {{ ref('stg_erp__currencies') }}
),

locations as (
    select * from {{ ref('stg_erp__stock_locations') }}
)

select
    sales.sale_id,
    sales.sale_number,
    sales.reference as rma_number,
    {{ normalize_rma('sales.reference') }} as rma_normalized,
    sales.state,
    sales.sale_date,
    sales.origin_sale_id,
    original.reference as order_ref,
    currencies.currency_code,
    locations.location_code as warehouse_code,
    sales.created_at,
    sales.updated_at,
    sales.source_position,
    coalesce(sales.updated_at, sales.source_changed_at) as source_changed_at
from sales_in_scope as sales
left join sales as original on original.sale_id = sales.origin_sale_id
left join currencies on currencies.currency_id = sales.currency_id
left join locations on locations.location_id = sales.warehouse_id
where sales.origin_sale_id is not null or sales.sale_id in (select negative.sale_id from negative)
