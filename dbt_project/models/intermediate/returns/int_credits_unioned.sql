{%- set full = returns_incremental(condition='credits_touched_condition()') %}

-- Money movements for returns (DESIGN §4, §5), one row per document line:
-- - ERP credit notes (account_invoice type out, posted or paid) that have a line whose origin is
--   an ERP return line: every line of the note, |total_amount_cache| spread over the lines by
--   line value (|quantity x unit_price|) rounded to cents, the last line taking the remainder, so
--   a note's rows sum to its total exactly.
-- - Shopify refunds with a successful refund transaction: linked through their refund line items'
--   line_item_id = the returns SaaS provider_line_item_id; the successful transactions' sum spread
--   over the refund line items by subtotal + tax the same way. A refund without line items is one
--   header-level row, linked through its order id when exactly one return has it.
-- - Amazon: Refunded Amount (> 0) of the newest report row of each item.
-- - Returns SaaS store credit: total_refund of a closed store_credit return (not a channel refund).
with erp_lines as (
    select * from {{ ref('int_return_order_lines_joined') }}
),

invoices as (
    select *
    from {{ ref('stg_erp__invoices') }}
    where not is_deleted and invoice_type = 'out' and state in ('posted', 'paid')
),

invoice_lines as (
    select * from {{ ref('stg_erp__invoice_lines') }}
    where not is_deleted
    {%- if not full %}
        -- the notes with a line from a touched return (a note is the return of its first such line)
        and invoice_id in (
            select il.invoice_id
            from {{ ref('stg_erp__invoice_lines') }} as il
            inner join {{ ref('int_return_order_lines_joined') }} as rl
                on rl.sale_line_id = il.origin_sale_line_id
            where {{ in_touched('rl.return_key', 'return', full) }}
        )
    {%- endif %}
),

currencies as (
    select * from {{ ref('stg_erp__currencies') }}
),

products as (
    select * from {{ ref('stg_erp__products') }}
),

erp_lines_joined as (
    select
        invoice_lines.invoice_line_id,
        invoice_lines.invoice_id,
        invoices.invoice_number,
        erp_lines.return_line_key,
        erp_lines.return_key as line_return_key,
        coalesce(products.product_code, erp_lines.product_code) as sku,
        abs(invoice_lines.quantity) as quantity,
        abs(invoice_lines.quantity * invoice_lines.unit_price) as weight,
        abs(invoices.total_amount) as note_total,
        currencies.currency_code as currency,
        {{ utc('invoices.invoice_date') }} as issued_at,
        invoice_lines.source_position,
        coalesce(invoices.updated_at, invoices.source_changed_at) as source_changed_at
    from invoice_lines
    inner join invoices on invoices.invoice_id = invoice_lines.invoice_id
    left join erp_lines on erp_lines.sale_line_id = invoice_lines.origin_sale_line_id
    left join currencies on currencies.currency_id = invoices.currency_id
    left join products on products.product_id = invoice_lines.product_id
),

-- the note's return: that of its first line with a return origin (a hash aggregate joined back,
-- not a window sorting every line)
note_returns as (
    select invoice_id, arg_min(line_return_key, invoice_line_id) as return_key
    from erp_lines_joined
    where line_return_key is not null
    group by 1
),

erp_rows as (
    select erp_lines_joined.*, note_returns.return_key
    from erp_lines_joined
    left join note_returns on note_returns.invoice_id = erp_lines_joined.invoice_id
),

erp_allocated as (
    {{ allocate_amount('erp_rows', 'invoice_id', 'invoice_line_id', 'note_total', 'weight') }}
),

erp as (
    select
        {{ surrogate_key('credit', ["'erp'", 'invoice_id', 'invoice_line_id']) }} as credit_key,
        return_key,
        return_line_key,
        'erp' as system,
        'credit_note' as kind,
        false as is_channel_refund,
        amount,
        currency,
        issued_at,
        invoice_number as external_id,
        cast(invoice_line_id as varchar) as external_line_id,
        sku,
        quantity,
        case
            when return_line_key is not null then 'erp_line_origin'
            when return_key is not null then 'erp_invoice'
        end as link_rule,
        'erp' as source_system,
        cast(invoice_line_id as varchar) as source_record_id,
        source_position,
        source_changed_at
    from erp_allocated
    where return_key is not null and {{ in_touched('return_key', 'return', full) }}
),

-- read by three CTEs below: materialized once (measured at 100,000 returns: inlined three times is
-- no cheaper, 0.15 CPU-s either way for the whole model)
refund_items as materialized (
    select * from {{ ref('stg_shopify__refund_line_items') }}
),

refunds as (
    select * from {{ ref('stg_shopify__refunds') }}
    where is_refund
    {%- if not full %}
        -- touched refunds, and those a touched return's line items or order link
        and (
            {{ in_touched('refund_id', 'refund', full) }}
            or order_id in (
                select shopify_order_id from {{ ref('int_returns_linked') }}
                where {{ in_touched('return_key', 'return', full) }}
            )
            or refund_id in (
                select items.refund_id
                from refund_items as items
                inner join {{ ref('stg_returns_saas__return_line_items') }} as saas
                    on saas.provider_line_item_id = items.line_item_id
                where {{ in_touched('saas.rma_normalized', 'rma', full) }}
            )
        )
    {%- endif %}
),


saas_lines as (
    select items.provider_line_item_id, lines.return_line_key, lines.return_key, lines.sku
    from {{ ref('int_channel_return_lines_unioned') }} as lines
    inner join {{ ref('stg_returns_saas__return_line_items') }} as items
        on
            items.rma_normalized = lines.rma_normalized
            and items.channel_sku = lines.channel_sku
    where lines.source_system = 'returns_saas' and items.provider_line_item_id is not null
    {%- if not full %}
        and items.provider_line_item_id in (
            select line_item_id from refund_items where refund_id in (select refund_id from refunds)
        )
    {%- endif %}
    qualify row_number() over (
        partition by items.provider_line_item_id order by lines.return_key
    ) = 1
),

saas_orders as (
    select shopify_order_id, min(return_key) as return_key
    from {{ ref('int_returns_linked') }}
    where shopify_order_id is not null
    group by 1
    having count(*) = 1
),

shopify_lines_joined as (
    select
        refunds.refund_id,
        coalesce(refund_items.refund_line_item_id, 0) as line_id,
        refund_items.refund_line_item_id,
        saas_lines.return_line_key,
        saas_lines.return_key as line_return_key,
        case when refund_items.refund_line_item_id is null then saas_orders.return_key end
            as order_return_key,
        case
            when saas_lines.return_line_key is not null then 'shopify_line_item'
            when refund_items.refund_line_item_id is null and saas_orders.return_key is not null
                then 'shopify_order'
        end as line_link_rule,
        coalesce(saas_lines.sku, crosswalk.erp_product_code) as sku,
        refund_items.quantity,
        coalesce(
            abs(refund_items.subtotal) + abs(coalesce(refund_items.total_tax, 0)),
            abs(refund_items.quantity * refund_items.unit_price),
            0
        ) as weight,
        refunds.refund_amount as refund_total,
        refunds.currency,
        refunds.processed_at as issued_at,
        refunds.source_position,
        refunds.source_changed_at
    from refunds
    left join refund_items on refund_items.refund_id = refunds.refund_id
    left join saas_lines on saas_lines.provider_line_item_id = refund_items.line_item_id
    left join saas_orders on saas_orders.shopify_order_id = refunds.order_id
    left join {{ ref('stg_reference__sku_crosswalks') }} as crosswalk
        on crosswalk.channel = 'shopify' and crosswalk.channel_sku = refund_items.channel_sku
),

-- the refund's return: that of its first line item linked to a return line (a hash aggregate
-- joined back, not a window)
refund_returns as (
    select refund_id, arg_min(line_return_key, refund_line_item_id) as return_key
    from shopify_lines_joined
    where line_return_key is not null
    group by 1
),

shopify_rows as (
    select
        shopify_lines_joined.*,
        coalesce(refund_returns.return_key, shopify_lines_joined.order_return_key) as return_key
    from shopify_lines_joined
    left join refund_returns on refund_returns.refund_id = shopify_lines_joined.refund_id
),

shopify_allocated as (
    {{ allocate_amount('shopify_rows', 'refund_id', 'line_id', 'refund_total', 'weight') }}
),

shopify as (
    select
        {{ surrogate_key('credit', ["'shopify'", 'refund_id', 'refund_line_item_id']) }}
            as credit_key,
        return_key,
        return_line_key,
        'shopify',
        'refund',
        true,
        amount,
        currency,
        issued_at,
        cast(refund_id as varchar),
        cast(refund_line_item_id as varchar),
        sku,
        quantity,
        coalesce(line_link_rule, case when return_key is not null then 'shopify_refund' end),
        'shopify',
        cast(refund_id as varchar),
        source_position,
        source_changed_at
    from shopify_allocated
    where
        {{ in_touched('return_key', 'return', full) }}
        or (return_key is null and {{ in_touched('refund_id', 'refund', full) }})
),

amazon_lines as (
    select * from {{ ref('int_channel_return_lines_unioned') }} where source_system = 'amazon'
),

amazon as (
    select
        {{ surrogate_key('credit', ["'amazon'", 'rows_.amazon_rma_id', 'rows_.channel_sku']) }},
        amazon_lines.return_key,
        amazon_lines.return_line_key,
        'amazon',
        'refund',
        true,
        cast(abs(rows_.refunded_amount) as decimal(18, 4)),
        rows_.currency,
        rows_.source_changed_at as issued_at,
        rows_.amazon_rma_id,
        rows_.channel_sku,
        amazon_lines.sku,
        rows_.quantity,
        'rma_normalized',
        'amazon',
        rows_.amazon_rma_id || ':' || rows_.channel_sku,
        rows_.source_position,
        rows_.source_changed_at
    from {{ ref('stg_amazon__returns') }} as rows_
    inner join amazon_lines
        on
            amazon_lines.rma_normalized = rows_.rma_normalized
            and amazon_lines.channel_sku = rows_.channel_sku
    where rows_.refunded_amount <> 0 and {{ in_touched('rows_.rma_normalized', 'rma', full) }}
),

saas_store_credit as (
    select
        {{ surrogate_key('credit', ["'returns_saas'", 'saas.return_id']) }},
        {{ surrogate_key('return', ['saas.rma_normalized']) }},
        cast(null as varchar),
        'returns_saas',
        'store_credit',
        false,
        cast(abs(saas.total_refund) as decimal(18, 4)),
        saas.currency,
        saas.updated_at,
        cast(saas.return_id as varchar),
        cast(null as varchar),
        cast(null as varchar),
        cast(null as decimal(12, 3)),
        'rma_normalized',
        'returns_saas',
        cast(saas.return_id as varchar),
        saas.source_position,
        saas.source_changed_at
    from {{ ref('stg_returns_saas__returns') }} as saas
    where
        saas.outcome = 'store_credit'
        and saas.state = 'closed'
        and coalesce(saas.total_refund, 0) <> 0
        and saas.rma_normalized is not null
        and {{ in_touched('saas.rma_normalized', 'rma', full) }}
)

select * from erp
union all
select * from shopify
union all
select * from amazon
union all
select * from saas_store_credit
