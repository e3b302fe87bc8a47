-- The mismatches of this run: every rule of the rule catalog (seeds/rule_catalog.csv) in one
-- table, each with a stable mismatch_id and the rule's severity, both from the catalog.
-- The lifecycle (pipelines/lib/recon/lifecycle.py) merges this table into recon.mismatches.
--
-- The rule models unioned are the catalog's `model` column. dbt cannot read a seed while it
-- parses, and a ref must be known then, so returnsync passes the list in the environment
-- (RETURNSYNC_RECON_RULE_MODELS, set by pipelines.lib.recon.catalog.dbt_env for every dbt
-- command it runs). dbt started by hand without it unions the models of DESIGN §5's rules.
--
-- mismatch_id is md5(`rule|rma_number|<product>|<place>`), empty strings for nulls, where the
-- catalog's key_shape says what the natural key is:
--   rma              the return (product and place empty);
--   rma_sku          the return line: RMA, product and, for the stock rules, the ERP location;
--   scanned_rma_sku  the scanned RMA, the product and the receiving warehouse.
-- Models under models/recon/report/ are not rules: they hold the money facts the report reads.
{%- set listed = env_var('RETURNSYNC_RECON_RULE_MODELS', '') %}
{%- set rule_models = listed.split(',') if listed else [
    'recon_stock_mismatches',
    'recon_credit_mismatches',
    'recon_duplicate_credits',
    'recon_return_mismatches',
    'recon_unmatched_receipts',
] %}
{%- if execute and not listed %}
    {%- for node in graph.get('nodes', {}).values()
        if node.resource_type == 'model' and node.original_file_path.startswith('models/recon/')
        and not node.original_file_path.startswith('models/recon/report/') %}
        {%- set model = node.unique_id.split('.')[-1] %}
        {%- if model not in rule_models + [
            'recon_run', 'recon_mismatches_current', 'adjustment_candidates'
        ] %}
            {%- do exceptions.warn(
                model ~ ' is not in recon_mismatches_current: dbt was started without '
                ~ 'RETURNSYNC_RECON_RULE_MODELS (run it through returnsync)'
            ) %}
        {%- endif %}
    {%- endfor %}
{%- endif %}

with

flagged as (
    {%- for rule_model in rule_models %}
        select * from {{ ref(rule_model) }}
        {%- if not loop.last %}
            union all by name
        {%- endif %}
    {%- endfor %}
),

catalog as (
    select rule, severity, key_shape from {{ ref('rule_catalog') }}
)

select
    md5(concat_ws(
        '|',
        flagged.rule,
        coalesce(flagged.rma_number, ''),
        case when catalog.key_shape = 'rma' then '' else coalesce(flagged.sku, '') end,
        case catalog.key_shape
            when 'rma_sku' then coalesce(flagged.location, '')
            when 'scanned_rma_sku' then coalesce(flagged.warehouse, '')
            else ''
        end
    )) as mismatch_id,
    flagged.rule,
    catalog.severity,
    flagged.rma_number,
    flagged.sku,
    flagged.warehouse,
    flagged.location,
    flagged.expected,
    flagged.actual,
    cast(flagged.amount_delta as decimal(18, 4)) as amount_delta,
    cast(flagged.qty_delta as decimal(18, 3)) as qty_delta,
    cast(flagged.detected_at as timestamp with time zone) as detected_at
from flagged
left join catalog on catalog.rule = flagged.rule
