"""`ingest_job`: land every source and nothing else (`returnsync ingest`; issue 23).

It selects the landing assets (group `landing`: the CDC change streams, from Kafka or
`cdc/*.ndjson`, and every file drop) with their Great Expectations checks; no dbt model is built
and nothing is reconciled. `returnsync run` executes `main_job`, whose landing steps are these same
assets, so both land with the same code.
"""

import dagster as dg

INGEST_JOB = "ingest_job"

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.groups("landing"),
    description="Land every source (CDC files or Kafka, file drops) into raw, with ledgers, dead "
    "letters and the boundary checks; builds and reconciles nothing.",
)

defs = dg.Definitions(jobs=[ingest_job])
