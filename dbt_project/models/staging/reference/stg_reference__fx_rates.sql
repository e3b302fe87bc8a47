-- Exchange rates to the company currency (reference/fx_rates.csv: date, currency,
-- rate_to_company), as of the current version of the file (the last to arrive,
-- meta.reference_versions; see stg_reference__sku_crosswalks). The report converts a figure
-- with the latest rate on or before its date (DESIGN §11); no rate, no company-currency figure.
with current_version as (
    select sha256
    from meta.reference_versions
    where raw_table = 'fx_rates'
    order by version desc
    limit 1
),

newest_file as (
    select _file_sha256
    from {{ source('raw', 'fx_rates') }}
    order by _ingested_at desc, _file desc
    limit 1
)

select
    date as rate_date,
    upper(trim(currency)) as currency,
    rate_to_company,
    _file as source_file,
    _row_number as source_row_number
from {{ source('raw', 'fx_rates') }}
where
    _file_sha256 = coalesce(
        (select current_version.sha256 from current_version),
        (select newest_file._file_sha256 from newest_file)
    )
    and date is not null
    and currency is not null
    and rate_to_company > 0
qualify row_number() over (
    partition by date, upper(trim(currency)) order by _row_number desc
) = 1
