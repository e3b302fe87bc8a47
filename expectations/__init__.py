"""Great Expectations at the landing boundary (DESIGN §3): the suites of `suites.py`, run on the
rows of the files landed in one run.

Great Expectations is imported lazily (it takes seconds), only when a batch has rows. It
validates pandas frames (its SQL data source does not work on DuckDB), with analytics and
progress bars off. Plain Python: no Dagster here; `assets/files.py` turns the outcome into asset
checks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from expectations.suites import KEY_COLUMNS, PERSONAL_COLUMNS, SUITES, Frame

SAMPLE_ROWS = 20  # failing rows shown per expectation
CHUNK_VECTORS = 100  # DuckDB vectors of 2048 rows validated at a time


@dataclass(frozen=True)
class ExpectationResult:
    frame: str
    expectation: str  # e.g. expect_column_values_to_be_in_set
    column: str
    success: bool
    element_count: int
    unexpected_count: int


@dataclass
class ValidationOutcome:
    """The result of one suite on one landed batch."""

    raw_table: str
    rows: int = 0  # rows of the main frame
    results: list[ExpectationResult] = field(default_factory=list)
    # failing rows: frame, expectation, column, value, _file, _row_number (never personal data)
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]


def validate_batch(
    con,
    raw_table: str,
    sha256s: list[str],
    chunk_vectors: int = CHUNK_VECTORS,
    *,
    since=None,
) -> ValidationOutcome:
    """Run the suite of `raw_table` on the rows of the files `sha256s` (one landing run).

    Frames are read from DuckDB in chunks (`chunk_vectors` x 2048 rows) so memory stays bounded
    on big batches; counts add up over the chunks and the sample keeps the first failing rows.
    `since` (the landing's `_ingested_at` stamp, `FileLandingSummary.ingested_at`) lets DuckDB
    skip the row groups landed before it instead of testing every row of the raw table for the
    batch's hashes; the rows validated are the same (those of `sha256s`).
    """
    outcome = ValidationOutcome(raw_table)
    if not sha256s:
        return outcome
    totals: dict[tuple[str, str, str], list[int]] = {}
    batch, params = "list_contains(?, r._file_sha256)", [list(sha256s)]
    if since is not None:
        batch, params = f"r._ingested_at >= ? and {batch}", [since, list(sha256s)]
    for position, frame in enumerate(SUITES[raw_table]):
        con.execute(frame.sql.format(batch=batch), params)
        while len(df := con.fetch_df_chunk(chunk_vectors)):
            if position == 0:
                outcome.rows += len(df)
            _validate_frame(raw_table, frame, df, outcome, totals)
    outcome.results = [
        ExpectationResult(frame, expectation, column, unexpected == 0, elements, unexpected)
        for (frame, expectation, column), (elements, unexpected) in totals.items()
    ]
    return outcome


def validate_frames(raw_table: str, frames: dict[str, Any]) -> ValidationOutcome:
    """Run the suite of `raw_table` on ready pandas frames (frame name -> DataFrame)."""
    outcome = ValidationOutcome(raw_table)
    totals: dict[tuple[str, str, str], list[int]] = {}
    for position, frame in enumerate(SUITES[raw_table]):
        df = frames[frame.name]
        if position == 0:
            outcome.rows = len(df)
        if len(df):
            _validate_frame(raw_table, frame, df, outcome, totals)
    outcome.results = [
        ExpectationResult(frame, expectation, column, unexpected == 0, elements, unexpected)
        for (frame, expectation, column), (elements, unexpected) in totals.items()
    ]
    return outcome


def _validate_frame(raw_table: str, frame: Frame, df, outcome, totals) -> None:
    leaked = PERSONAL_COLUMNS.intersection(df.columns)
    if leaked:  # a suite must never read personal data
        raise ValueError(f"frame {raw_table}.{frame.name} selects personal columns {leaked}")
    definition, suite = _prepared(raw_table, frame)
    batch = definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "SUMMARY",
            "unexpected_index_column_names": list(KEY_COLUMNS),
            "partial_unexpected_count": SAMPLE_ROWS,
        },
    )
    for res in result.results:
        config = res.expectation_config
        column = config.kwargs["column"]
        details = res.result or {}
        total = totals.setdefault((frame.name, config.type, column), [0, 0])
        total[0] += int(details.get("element_count", len(df)))
        unexpected = int(details.get("unexpected_count") or 0)
        if not res.success and not unexpected:  # failed without counting rows: count it
            unexpected = 1
        total[1] += unexpected
        for index in details.get("partial_unexpected_index_list") or []:
            if len(outcome.sample) >= SAMPLE_ROWS * 3:
                break
            outcome.sample.append(
                {
                    "frame": frame.name,
                    "expectation": config.type,
                    "column": column,
                    "value": _plain(index.get(column)),
                    **{k: _plain(index.get(k)) for k in KEY_COLUMNS},
                }
            )


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> plain Python, NaN/NaT -> None."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value.__class__.__name__ in ("NaTType", "NAType"):
        return None
    return value


_CONTEXT: tuple[Any, Any] | None = None
# (raw table, frame name) -> (batch definition, suite): made once per process. Adding the pandas
# data source again for every batch made the ephemeral context write its whole configuration as
# YAML (3 saves a frame: ~0.17 of the 0.5 CPU-s of a 127-row webhooks batch, measured
# 2026-12-06); the suites are fixed, so the objects are reused, and every batch is validated whole.
_PREPARED: dict[tuple[str, str], tuple[Any, Any]] = {}


def _prepared(raw_table: str, frame: Frame) -> tuple[Any, Any]:
    """The GE batch definition (a whole-dataframe asset of its own data source) and the suite
    of one frame, built on first use."""
    key = (raw_table, frame.name)
    if key not in _PREPARED:
        gx, context = _context()
        import great_expectations.expectations as gxe

        name = f"{raw_table}.{frame.name}"
        source = context.data_sources.add_or_update_pandas(name)
        asset = source.add_dataframe_asset(name)
        definition = asset.add_batch_definition_whole_dataframe(name)
        suite = gx.ExpectationSuite(name=name)
        for exp in frame.expectations:
            suite.add_expectation(getattr(gxe, exp.type)(column=exp.column, **exp.kwargs))
        _PREPARED[key] = (definition, suite)
    return _PREPARED[key]


def warm_up() -> None:
    """Import Great Expectations and prepare every suite now (~3 CPU-s, once per process), so a
    long-lived process (`returnsync watch`) does not pay it in its first increment's landing."""
    for raw_table, frames in SUITES.items():
        for frame in frames:
            _prepared(raw_table, frame)


def _context():
    """An ephemeral GE context, created once per process (the import takes seconds)."""
    global _CONTEXT
    if _CONTEXT is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        _CONTEXT = (gx, context)
    return _CONTEXT


__all__ = [
    "SUITES",
    "ExpectationResult",
    "ValidationOutcome",
    "validate_batch",
    "validate_frames",
    "warm_up",
]
