{%- set full = returns_incremental(condition='rma_number_touched_condition()') %}

-- Money facts per return for the report's cases (DESIGN §11), one row per (return, side,
-- currency): side `return` (the return's own currency, no amount), `refund` (channel refunds, as
-- recon_credit_mismatches sums them) and `credit` (posted or paid ERP credit notes). `first_at`
-- is the first refund or credit note: the date a company-currency figure is converted at.
-- The report (pipelines/lib/recon/report.py) reads it by RMA, so a mismatch of any age finds the
-- currency of its return.
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns' RMAs are
-- recomputed (an RMA number normalizes to its return's rma_normalized, so the rows of a
-- touched return are found whatever RMA number it showed before).
with

returns as (
    select
        return_key,
        rma_number,
        currency,
        approved_at
    from {{ ref('returns') }}
    where rma_number is not null and {{ in_touched('return_key', 'return', full) }}
),

money as (
    select
        return_key,
        case when is_channel_refund then 'refund' else 'credit' end as side,
        currency,
        amount,
        issued_at
    from {{ ref('credits') }}
    where
        return_key is not null
        and {{ in_touched('return_key', 'return', full) }}
        and (
            (is_channel_refund and amount > 0)
            or (system = 'erp' and not coalesce(is_channel_refund, false))
        )
),

sides as (
    select
        returns.rma_number,
        money.side,
        money.currency,
        sum(money.amount) as amount,
        min(money.issued_at) as first_at
    from money
    inner join returns on returns.return_key = money.return_key
    group by returns.rma_number, money.side, money.currency
),

own as (
    select
        rma_number,
        'return' as side,
        min(currency) as currency,
        cast(null as decimal(18, 4)) as amount,
        min(approved_at) as first_at
    from returns
    group by rma_number
)

select
    rma_number,
    side,
    currency,
    cast(amount as decimal(18, 4)) as amount,
    cast(first_at as timestamp with time zone) as first_at
from sides
union all
select
    rma_number,
    side,
    currency,
    amount,
    cast(first_at as timestamp with time zone) as first_at
from own
