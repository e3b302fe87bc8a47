-- Rules refund_without_credit, credit_amount_mismatch, currency_mismatch, credit_without_receipt
-- (DESIGN §5), one row per return:
--   channel refund: marts.credits rows with is_channel_refund (Shopify successful refund
--     transactions at processed_at, Amazon Refunded Amount of the newest report row per item at
--     the Return delivery date or report date) and an amount > 0; B2B has none;
--   ERP credit: marts.credits rows of system erp (posted or paid credit notes with a line whose
--     origin is one of the return's lines; |total_amount_cache| spread over the lines, so the
--     rows of a return sum to its credit), at invoice_date 00:00 UTC.
-- Sign convention: amount_delta = ERP credit - channel refund (negative: the ERP is short).
-- The tolerance is the refund currency's amount_tolerance row of the settings seed, else the
-- default row (currency empty) (DESIGN §11: money thresholds per currency).
-- Incremental on the return (macros/recon_incremental.sql): the returns in scope.
{%- set full = recon_incremental() %}
with

run as (
    select * from {{ ref('recon_run') }}
),

tolerances as (
    select
        currency,
        value as amount_tolerance
    from {{ ref('recon_settings') }}
    where setting = 'amount_tolerance'
),

channel_refunds as (
    select
        return_key,
        sum(amount) as amount,
        min(issued_at) as first_issued_at,
        count(distinct currency) as currency_count,
        min(currency) as currency,
        string_agg(distinct currency, ',' order by currency) as currencies
    from {{ ref('credits') }}
    where
        is_channel_refund and amount > 0 and return_key is not null
        and {{ in_recon_scope('return_key', full) }}
    group by return_key
),

erp_credits as (
    select
        return_key,
        sum(amount) as amount,
        min(issued_at) as first_issued_at,
        count(distinct currency) as currency_count,
        min(currency) as currency,
        string_agg(distinct currency, ',' order by currency) as currencies
    from {{ ref('credits') }}
    where
        system = 'erp' and not coalesce(is_channel_refund, false) and return_key is not null
        and {{ in_recon_scope('return_key', full) }}
    group by return_key
),

returns_money as (
    select
        r.return_key,
        r.rma_number,
        r.warehouse,
        r.outcome,
        coalesce(r.is_received, false) as is_received,
        c.return_key is not null as has_refund,
        c.amount as refund_amount,
        c.first_issued_at as first_refund_at,
        c.currency_count as refund_currency_count,
        c.currency as refund_currency,
        c.currencies as refund_currencies,
        e.return_key is not null as has_credit,
        e.amount as credit_amount,
        e.first_issued_at as first_credit_at,
        e.currency_count as credit_currency_count,
        e.currency as credit_currency,
        e.currencies as credit_currencies,
        run.as_of,
        run.credit_grace_h,
        run.receipt_after_credit_grace_h,
        coalesce(t.amount_tolerance, d.amount_tolerance, run.amount_tolerance)
            as amount_tolerance
    from {{ ref('returns') }} as r
    left join channel_refunds as c on c.return_key = r.return_key
    left join erp_credits as e on e.return_key = r.return_key
    left join tolerances as t on t.currency = c.currency
    left join tolerances as d on d.currency is null
    cross join run
    where
        (c.return_key is not null or e.return_key is not null)
        and {{ in_recon_scope('r.return_key', full) }}
),

same_currency as (
    select
        *,
        has_refund and has_credit
        and refund_currency_count = 1
        and credit_currency_count = 1
        and refund_currency = credit_currency as is_same_currency
    from returns_money
),

refund_without_credit as (
    select
        'refund_without_credit' as rule,
        return_key,
        rma_number,
        warehouse,
        cast(refund_amount as varchar) as expected,
        '0' as actual,
        -refund_amount as amount_delta,
        as_of
    from same_currency
    where
        has_refund
        and not has_credit
        and first_refund_at + interval 1 hour * credit_grace_h <= as_of
),

credit_amount_mismatch as (
    select
        'credit_amount_mismatch' as rule,
        return_key,
        rma_number,
        warehouse,
        cast(refund_amount as varchar) as expected,
        cast(credit_amount as varchar) as actual,
        credit_amount - refund_amount as amount_delta,
        as_of
    from same_currency
    where is_same_currency and abs(credit_amount - refund_amount) > amount_tolerance
),

currency_mismatch as (
    select
        'currency_mismatch' as rule,
        return_key,
        rma_number,
        warehouse,
        refund_currencies as expected,
        credit_currencies as actual,
        null as amount_delta,
        as_of
    from same_currency
    where has_refund and has_credit and not is_same_currency
),

credit_without_receipt as (
    select
        'credit_without_receipt' as rule,
        return_key,
        rma_number,
        warehouse,
        'received' as expected,
        'nothing received' as actual,
        credit_amount as amount_delta,
        as_of
    from same_currency
    where
        has_credit
        and not is_received
        and coalesce(outcome, '') <> 'keep_item'
        and first_credit_at + interval 1 hour * receipt_after_credit_grace_h <= as_of
),

flagged as (
    select * from refund_without_credit
    union all
    select * from credit_amount_mismatch
    union all
    select * from currency_mismatch
    union all
    select * from credit_without_receipt
)

select
    rule,
    rma_number,
    cast(null as varchar) as sku,
    warehouse,
    cast(null as varchar) as location,
    expected,
    actual,
    cast(amount_delta as decimal(18, 4)) as amount_delta,
    cast(null as decimal(18, 3)) as qty_delta,
    as_of as detected_at,
    return_key
from flagged
