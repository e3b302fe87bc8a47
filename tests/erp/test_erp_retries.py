"""`with_retries`: transient ERP errors are retried with backoff, others are not."""

from __future__ import annotations

import pytest

from pipelines.lib.erp import ErpPermanentError, ErpTransientError, with_retries


def test_transient_errors_are_retried_with_growing_delays():
    outcomes = [ErpTransientError("down"), ErpTransientError("down"), "doc"]
    waits: list[float] = []

    def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_retries(call, base_delay=0.5, sleep=waits.append) == "doc"
    assert waits == [0.5, 1.0]


def test_retries_end_with_the_last_transient_error():
    waits: list[float] = []

    def call():
        raise ErpTransientError(f"down {len(waits)}")

    with pytest.raises(ErpTransientError, match="down 2"):
        with_retries(call, attempts=3, base_delay=4, max_delay=5, sleep=waits.append)
    assert waits == [4, 5]


def test_permanent_errors_are_not_retried():
    calls = []

    def call():
        calls.append(1)
        raise ErpPermanentError("invalid")

    with pytest.raises(ErpPermanentError):
        with_retries(call, sleep=lambda _: None)
    assert calls == [1]
