-- The SKU crosswalk as of the newest landed file: each file is a full snapshot.
with newest_file as (
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
where _file_sha256 = (select _file_sha256 from newest_file)
qualify row_number() over (
    partition by lower(trim(channel)), trim(channel_sku) order by _row_number desc
) = 1
