"""When things run: jobs, sensors and schedules, with no business logic.

Every module here that defines a module-level `defs` (a `dg.Definitions`) is merged into the code
location by `pipelines/definitions.py`.
"""
