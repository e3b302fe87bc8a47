"""Plain-Python library: no Dagster imports here, so every piece is tested directly."""
