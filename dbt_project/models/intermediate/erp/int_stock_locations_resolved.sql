-- Every ERP stock location with the code of the warehouse it sits in (the nearest ancestor of
-- type `warehouse`, up to four levels up; else the code without its last `-<suffix>`).
with locations as (
    select * from {{ ref('stg_erp__stock_locations') }}
)

select
    l0.location_id,
    l0.location_code,
    l0.location_type,
    coalesce(
        case when l0.location_type = 'warehouse' then l0.location_code end,
        case when l1.location_type = 'warehouse' then l1.location_code end,
        case when l2.location_type = 'warehouse' then l2.location_code end,
        case when l3.location_type = 'warehouse' then l3.location_code end,
        case when l4.location_type = 'warehouse' then l4.location_code end,
        nullif(regexp_extract(l0.location_code, '^(.+)-[^-]+$', 1), '')
    ) as warehouse_code
from locations as l0
left join locations as l1 on l1.location_id = l0.parent_location_id
left join locations as l2 on l2.location_id = l1.parent_location_id
left join locations as l3 on l3.location_id = l2.parent_location_id
left join locations as l4 on l4.location_id = l3.parent_location_id
