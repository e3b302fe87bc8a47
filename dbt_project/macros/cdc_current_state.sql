{#-
    Current state per primary key of a raw Debezium change log (DESIGN §2.1, STYLE: Debezium's
    own sink semantics).

    - Order of changes for one row: source lsn, then source ts_ms, then the Kafka offset
      (`_seq`; a missing lsn or ts_ms sorts first). The latest change wins.
    - A key whose latest change is a delete (`d`) is deleted; so is a key without any delete
      event that has a tombstone after its latest change in the same partition (the delete itself
      was lost). A delete carries only the key: its before-image is never data.
    - A truncate (`t`) deletes every row whose latest change is ordered before it.
    - Snapshot reads (`r`) and rows pulled from the ERP by batch count like creates.

    Returns every contract column of the raw table plus `_position` (topic:partition:offset of the
    winning change), `_op`, `_changed_at`, `_last_ingested_at` (newest ingestion of any change of
    the key) and `is_deleted`.

    Incremental models (`materialized='incremental'`, `incremental_strategy='delete+insert'`,
    `unique_key=<pk>`) recompute only the keys with a change ingested since the last build (all
    keys when a new truncate arrived), from all their changes, so late and out-of-order events are
    handled and a full refresh gives the same table. "Since" is `_ingested_at >` the table's newest
    `_last_ingested_at`: landing stamps its rows with its own start time and never overlaps a
    build, so a change landed after a build has a later stamp (with `>=`, every build recomputed
    the keys of the landing before it again); their deleted keys are removed by the
    `delete_deleted_keys()` post-hook. Full builds (and views) simply leave deleted keys out.
-#}
{% macro cdc_current_state(raw_table, pk) -%}
{%- set src = source('raw', raw_table) -%}
{%- set incremental = config.get('materialized') == 'incremental' -%}
with
{% if incremental and is_incremental() %}
watermark as (
    select coalesce(max(_last_ingested_at), '1970-01-01 00:00:00+00'::timestamptz) as watermark_at
    from {{ this }}
),

changed_keys as (
    select distinct {{ pk }} as pk
    from {{ src }}
    where _ingested_at > (select watermark_at from watermark) and _op <> 't'
),

new_truncate as (
    select count(*) > 0 as any_new
    from {{ src }}
    where _op = 't' and _ingested_at > (select watermark_at from watermark)
),
{% endif %}
-- not materialized: each reader below reads only the columns it needs
changes as not materialized (
    select *
    from {{ src }}
    where _op <> 't'
    {% if incremental and is_incremental() %}
        and (
            {{ pk }} in (select pk from changed_keys)
            or (select any_new from new_truncate)
        )
    {% endif %}
),

-- one pass over the changes per key (a hash aggregate, not a window sorting every change): its
-- newest ingestion, the position of its newest change that is not a tombstone (by the order
-- above), and whether it has a delete event
per_key as (
    select
        {{ pk }} as pk,
        max(_ingested_at) as _last_ingested_at,
        arg_max(
            struct_pack(tp := _topic, p := _partition, o := _offset),
            struct_pack(
                l := coalesce(_source_lsn, -1),
                t := coalesce(_source_ts_ms, -1),
                o := coalesce(_offset, -1),
                tp := coalesce(_topic, ''),
                p := coalesce(_partition, -1)
            )
        ) filter (where not coalesce(_is_tombstone, false)) as won,
        bool_or(_op = 'd' and not coalesce(_is_tombstone, false)) as has_delete
    from changes
    group by 1
),

winners as (
    select
        pk,
        _last_ingested_at,
        has_delete,
        won.tp as won_topic,
        won.p as won_partition,
        won.o as won_offset
    from per_key
),

-- A tombstone only follows a delete; it decides alone only when that delete never arrived (a
-- key with a delete event is ordered by the delete's lsn, so a redelivered tombstone cannot
-- remove a key created again later).
tombstones as (
    select {{ pk }} as pk, _topic, _partition, max(_offset) as _offset
    from changes
    where coalesce(_is_tombstone, false)
        and {{ pk }} not in (select pk from winners where has_delete)
    group by all
),

last_truncate as (
    select max([coalesce(_source_lsn, -1), coalesce(_source_ts_ms, -1), _offset]) as _seq
    from {{ src }}
    where _op = 't'
),

-- the winning change's row: (_topic, _partition, _offset) is unique per raw table
current_state as (
    select
        latest.* exclude ({{ pk }}, _topic, _partition, _offset, _ingested_at),
        w.pk as {{ pk }},
        latest._topic || ':' || latest._partition || ':' || latest._offset as _position,
        w._last_ingested_at,
        (
            latest.{{ pk }} is null
            or latest._op = 'd'
            or coalesce(t._offset > latest._offset, false)
            or coalesce(
                [coalesce(latest._source_lsn, -1), coalesce(latest._source_ts_ms, -1), latest._offset]
                < (select _seq from last_truncate),
                false
            )
        ) as is_deleted
    from winners as w
    left join changes as latest
        on
            latest._topic = w.won_topic
            and latest._partition = w.won_partition
            and latest._offset = w.won_offset
    left join tombstones as t
        on t.pk = w.pk and t._topic = latest._topic and t._partition = latest._partition
)

select * from current_state
{#- an incremental build keeps a deleted key's row: delete+insert then removes the key's old row,
    and the post-hook the new one; a full build leaves deleted keys out -#}
{%- if not (incremental and is_incremental()) %}
where not is_deleted
{%- endif %}
{%- endmacro %}


{#- Post-hook of incremental current-state models: deleted keys disappear. -#}
{% macro delete_deleted_keys() -%}
delete from {{ this }} where is_deleted
{%- endmacro %}


{#- Letters and digits only, upper-case: how RMA numbers are compared (DESIGN §4). -#}
{% macro normalize_rma(expr) -%}
nullif(upper(regexp_replace(coalesce({{ expr }}, ''), '[^A-Za-z0-9]', '', 'g')), '')
{%- endmacro %}


{#- A `timestamp` (UTC, no zone) or `date` as an absolute UTC time. -#}
{% macro utc(expr) -%}
timezone('UTC', cast({{ expr }} as timestamp))
{%- endmacro %}


{#- Deterministic surrogate key: md5 of the parts joined with '|' (null parts as ''). -#}
{% macro surrogate_key(prefix, parts) -%}
md5('{{ prefix }}' {%- for p in parts %} || '|' || coalesce(cast({{ p }} as varchar), ''){% endfor %})
{%- endmacro %}


{#-
    Spread a document total over its lines by weight: each line gets its share rounded to cents,
    the last line (by `line_col`, unique within a document) the remainder, so the lines of a
    document sum to its total exactly. Lines of zero total weight share equally. Returns
    `relation`'s columns + `_share` + `amount`. Per-document sums by hash aggregates joined back
    (no window: each window partitioned and sorted every line).
-#}
{% macro allocate_amount(relation, doc_col, line_col, total_col, weight_col) -%}
with _docs as (
    select
        {{ doc_col }} as _doc,
        sum({{ weight_col }}) as _doc_weight,
        count(*) as _doc_lines,
        max({{ line_col }}) as _doc_last_line
    from {{ relation }}
    group by 1
),

_shares as (
    select
        lines.*,
        _docs._doc_last_line,
        cast(round(
            case
                when _docs._doc_weight > 0
                    then cast(lines.{{ total_col }} as double) * cast(lines.{{ weight_col }} as double)
                        / cast(_docs._doc_weight as double)
                else cast(lines.{{ total_col }} as double) / _docs._doc_lines
            end, 2
        ) as decimal(18, 4)) as _share
    from {{ relation }} as lines
    inner join _docs on _docs._doc is not distinct from lines.{{ doc_col }}
),

-- the shares of each document's lines before its last one
_before_last as (
    select {{ doc_col }} as _doc, sum(_share) as _shares
    from _shares
    where {{ line_col }} <> _doc_last_line
    group by 1
)

select
    _shares.* exclude (_doc_last_line),
    cast(
        case
            when _shares.{{ line_col }} = _shares._doc_last_line
                then _shares.{{ total_col }} - coalesce(_before_last._shares, 0)
            else _shares._share
        end as decimal(18, 4)
    ) as amount
from _shares
left join _before_last on _before_last._doc is not distinct from _shares.{{ doc_col }}
{%- endmacro %}
