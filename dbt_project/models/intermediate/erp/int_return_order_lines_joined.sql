{%- set full = returns_incremental(key='sale_id', kind='sale') %}

-- ERP return lines: the negative-quantity sale_line rows of the return orders, with the ERP
-- product code and the return line they belong to (the return's RMA + the product code).
with orders as (
    select * from {{ ref('int_return_orders_joined') }}
),

lines as (
    select * from {{ ref('stg_erp__sale_lines') }}
    where not is_deleted and quantity < 0 and {{ in_touched('sale_id', 'sale', full) }}
),

products as (
    select * from {{ ref('stg_erp__products') }}
)

select
    lines.sale_line_id,
    lines.sale_id,
    orders.rma_normalized,
    products.product_code,
    coalesce(products.product_code, 'erp_product:' || lines.product_id) as line_ident,
    {{ surrogate_key('return', ['orders.rma_normalized']) }} as return_key,
    {{ surrogate_key('return_line', [
        'orders.rma_normalized',
        "coalesce(products.product_code, 'erp_product:' || lines.product_id)",
    ]) }} as return_line_key,
    abs(lines.quantity) as qty_authorized,
    lines.unit_price,
    orders.currency_code,
    orders.warehouse_code,
    orders.state as order_state,
    lines.source_position,
    coalesce(orders.updated_at, lines.source_changed_at) as source_changed_at
from lines
inner join orders on orders.sale_id = lines.sale_id
left join products on products.product_id = lines.product_id
where orders.rma_normalized is not null
