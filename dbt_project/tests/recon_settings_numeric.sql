-- The settings seed as the rules read it (recon.recon_run pivots every numeric setting into a
-- column of its name): a window in hours (a setting named `*_h`) or a tolerance or limit
-- (`*_tolerance`, `auto_approve_*`) must be a number, zero or more; one that is not would be
-- dropped from the pivot and its rule would compare against null. Names no setting itself.
select
    setting,
    value
from {{ ref('recon_settings') }}
where
    (
        setting like '%\_h' escape '\'
        or setting like '%\_tolerance' escape '\'
        or setting like 'auto\_approve\_%' escape '\'
    )
    and coalesce(try_cast(value as decimal(18, 4)) >= 0, false) = false
