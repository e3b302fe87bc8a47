"""returnsync: the Dagster code location and the plain-Python library it calls.

`pipelines.lib` does the work (decoding, landing, ledger, ERP client) without importing Dagster;
`pipelines.definitions` is the one place the Dagster `Definitions` object is built.
"""
