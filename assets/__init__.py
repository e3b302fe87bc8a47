"""What data exists: thin Dagster asset definitions that call `pipelines.lib`.

Every module here that defines a module-level `defs` (a `dg.Definitions`) is merged into the code
location by `pipelines/definitions.py`.
"""
