{%- set full = returns_incremental(
    key='return_key', kind='return', post_hook=["{{ refresh_stage_latencies_as_of() }}"]
) %}

-- One row per return and stage transition (DESIGN §14): requested -> received, received ->
-- inspected, inspected -> ERP posted, channel refund -> ERP credit. A stage's time is the first
-- record of that stage on the return (first WMS receipt, first inspection, first done ERP stock
-- move, first channel refund, first ERP credit note), so a return has at most one row per
-- transition. A row exists once its start stage happened; it is open while the end stage is
-- missing. requested -> received is not open for a return the channel closed, cancelled,
-- rejected or expired, or one the customer keeps (no receipt will come): it has no row then.
-- The ERP dates credit notes by day (invoice_date at 00:00 UTC), so a credit dated the refund's
-- own day counts as 0 h, never negative.
-- SLAs (hours) are the sla_* rows of the settings seed; as_of is the run's time (the run
-- context, macros/run_context.sql).
-- Incremental (macros/returns_incremental.sql): the rows of the touched returns are recomputed;
-- the columns that depend on as_of or the SLAs (as_of, open_age_h, sla_h, is_late, is_overdue)
-- are refreshed on the rows kept by a post-hook (refresh_stage_latencies_as_of), from the
-- row's own times, as a full build computes them.

with

run as (
    select {{ run_as_of() }} as as_of
),

slas as (
    select
        cast(setting as varchar) as setting,
        cast(max(value) as double) as sla_h
    from {{ ref('recon_settings') }}
    where starts_with(setting, 'sla_')
    group by setting
),

returns_ as (
    select
        return_key,
        rma_number,
        coalesce(channel, 'unknown') as channel,
        coalesce(warehouse, 'unknown') as warehouse,
        status,
        outcome,
        requested_at,
        source_system,
        source_record_id,
        source_position
    from {{ ref('returns') }}
    where {{ in_touched('return_key', 'return', full) }}
),

received as (
    select
        return_key,
        min(received_at) as received_at,
        arg_min(source_record_id, struct_pack(t := received_at, k := receipt_id))
            as received_record_id,
        arg_min(source_position, struct_pack(t := received_at, k := receipt_id))
            as received_position
    from {{ ref('receipts') }}
    where
        return_key is not null and received_at is not null
        and {{ in_touched('return_key', 'return', full) }}
    group by return_key
),

inspected as (
    select
        return_key,
        min(decided_at) as inspected_at,
        arg_min(source_record_id, struct_pack(t := decided_at, k := inspection_id))
            as inspected_record_id,
        arg_min(source_position, struct_pack(t := decided_at, k := inspection_id))
            as inspected_position
    from {{ ref('dispositions') }}
    where
        return_key is not null and decided_at is not null
        and {{ in_touched('return_key', 'return', full) }}
    group by return_key
),

posted as (
    select
        return_key,
        min(posted_at) as posted_at,
        arg_min(source_record_id, struct_pack(t := posted_at, k := adjustment_key))
            as posted_record_id,
        arg_min(source_position, struct_pack(t := posted_at, k := adjustment_key))
            as posted_position
    from {{ ref('inventory_adjustments') }}
    where
        return_key is not null and posted_at is not null
        and {{ in_touched('return_key', 'return', full) }}
    group by return_key
),

refunded as (
    select
        return_key,
        min(issued_at) as refunded_at,
        arg_min(system, struct_pack(t := issued_at, k := credit_key)) as refunded_system,
        arg_min(source_record_id, struct_pack(t := issued_at, k := credit_key))
            as refunded_record_id,
        arg_min(source_position, struct_pack(t := issued_at, k := credit_key)) as refunded_position
    from {{ ref('credits') }}
    where
        is_channel_refund and amount > 0 and return_key is not null and issued_at is not null
        and {{ in_touched('return_key', 'return', full) }}
    group by return_key
),

credited as (
    select
        return_key,
        min(issued_at) as credited_at,
        arg_min(source_record_id, struct_pack(t := issued_at, k := credit_key))
            as credited_record_id,
        arg_min(source_position, struct_pack(t := issued_at, k := credit_key)) as credited_position
    from {{ ref('credits') }}
    where
        system = 'erp'
        and not coalesce(is_channel_refund, false)
        and return_key is not null
        and issued_at is not null
        and {{ in_touched('return_key', 'return', full) }}
    group by return_key
),

transitions as (
    select
        r.return_key,
        1 as transition_order,
        'requested_to_received' as transition,
        'requested' as from_stage,
        'received' as to_stage,
        r.requested_at as started_at,
        rc.received_at as ended_at,
        r.source_system as start_system,
        r.source_record_id as start_record_id,
        r.source_position as start_position,
        'wms' as end_system,
        rc.received_record_id as end_record_id,
        rc.received_position as end_position
    from returns_ as r
    left join received as rc on rc.return_key = r.return_key
    where
        r.requested_at is not null
        and (
            rc.return_key is not null
            or (
                r.status not in ('closed', 'cancelled', 'rejected', 'expired')
                and coalesce(r.outcome, 'refund') <> 'keep_item'
            )
        )

    union all

    select
        rc.return_key,
        2,
        'received_to_inspected',
        'received',
        'inspected',
        rc.received_at,
        ins.inspected_at,
        'wms',
        rc.received_record_id,
        rc.received_position,
        'wms',
        ins.inspected_record_id,
        ins.inspected_position
    from received as rc
    left join inspected as ins on ins.return_key = rc.return_key

    union all

    select
        ins.return_key,
        3,
        'inspected_to_posted',
        'inspected',
        'posted',
        ins.inspected_at,
        p.posted_at,
        'wms',
        ins.inspected_record_id,
        ins.inspected_position,
        'erp',
        p.posted_record_id,
        p.posted_position
    from inspected as ins
    left join posted as p on p.return_key = ins.return_key

    union all

    select
        rf.return_key,
        4,
        'refunded_to_credited',
        'refunded',
        'credited',
        rf.refunded_at,
        c.credited_at,
        rf.refunded_system,
        rf.refunded_record_id,
        rf.refunded_position,
        'erp',
        c.credited_record_id,
        c.credited_position
    from refunded as rf
    left join credited as c on c.return_key = rf.return_key
),

measured as (
    select
        t.*,
        r.rma_number,
        r.channel,
        r.warehouse,
        s.sla_h,
        run.as_of,
        case
            when t.ended_at is null then null
            when t.transition = 'refunded_to_credited'
                then greatest(date_diff('second', t.started_at, t.ended_at), 0) / 3600.0
            else date_diff('second', t.started_at, t.ended_at) / 3600.0
        end as latency_h
    from transitions as t
    inner join returns_ as r on r.return_key = t.return_key
    left join slas as s on s.setting = 'sla_' || t.transition || '_h'
    cross join run
)

select
    {{ surrogate_key('stage', ['return_key', 'transition']) }} as stage_latency_key,
    cast(return_key as varchar) as return_key,
    cast(rma_number as varchar) as rma_number,
    cast(channel as varchar) as channel,
    cast(warehouse as varchar) as warehouse,
    cast(transition as varchar) as transition,
    cast(transition_order as integer) as transition_order,
    cast(from_stage as varchar) as from_stage,
    cast(to_stage as varchar) as to_stage,
    cast(started_at as timestamp with time zone) as started_at,
    cast(ended_at as timestamp with time zone) as ended_at,
    cast(latency_h as double) as latency_h,
    ended_at is null as is_open,
    cast(
        case when ended_at is null then date_diff('second', started_at, as_of) / 3600.0 end
        as double
    ) as open_age_h,
    cast(sla_h as double) as sla_h,
    coalesce(latency_h > sla_h, false) as is_late,
    coalesce(
        ended_at is null and date_diff('second', started_at, as_of) >= sla_h * 3600, false
    ) as is_overdue,
    cast(start_system as varchar) as start_system,
    cast(start_record_id as varchar) as start_record_id,
    cast(start_position as varchar) as start_position,
    cast(end_system as varchar) as end_system,
    cast(end_record_id as varchar) as end_record_id,
    cast(end_position as varchar) as end_position,
    cast(as_of as timestamp with time zone) as as_of
from measured
