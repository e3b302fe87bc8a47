-- The warehouse crosswalk (WMS dc_code -> ERP warehouse code) as of its current version, the
-- last to arrive (see stg_reference__sku_crosswalks: meta.reference_versions, DESIGN §12).
with current_version as (
    select sha256
    from meta.reference_versions
    where raw_table = 'warehouse_crosswalk'
    order by version desc
    limit 1
),

newest_file as (
    select _file_sha256
    from {{ source('raw', 'warehouse_crosswalk') }}
    order by _ingested_at desc, _file desc
    limit 1
)

select
    upper(trim(dc_code)) as dc_code,
    trim(erp_warehouse_code) as erp_warehouse_code,
    _file as source_file,
    _row_number as source_row_number
from {{ source('raw', 'warehouse_crosswalk') }}
where
    _file_sha256 = coalesce(
        (select current_version.sha256 from current_version),
        (select newest_file._file_sha256 from newest_file)
    )
qualify row_number() over (partition by upper(trim(dc_code)) order by _row_number desc) = 1
