-- The SKU crosswalk as of its current version: each file is a full snapshot, and the current
-- version is the last one to arrive (DESIGN §12: even a content landed before, put back after a
-- bad upload), recorded by landing in meta.reference_versions (pipelines/lib/files/reference.py).
-- That ledger is landing state written by the raw.sku_crosswalk asset, not a dbt source of its
-- own (a source would be a Dagster asset outside the warehouse layers). Raw rows without any
-- version recorded (loaded by other means): the newest landed file.
with current_version as (
    select sha256
    from meta.reference_versions
    where raw_table = 'sku_crosswalk'
    order by version desc
    limit 1
),

newest_file as (
    select _file_sha256
    from {{ source('raw', 'sku_crosswalk') }}
    order by _ingested_at desc, _file desc
    limit 1
)

select
    lower(trim(channel)) as channel,
    trim(channel_sku) as channel_sku,
    trim(erp_product_code) as erp_product_code,
    _file as source_file,
    _row_number as source_row_number
from {{ source('raw', 'sku_crosswalk') }}
where
    _file_sha256 = coalesce(
        (select current_version.sha256 from current_version),
        (select newest_file._file_sha256 from newest_file)
    )
qualify row_number() over (
    partition by lower(trim(channel)), trim(channel_sku) order by _row_number desc
) = 1
