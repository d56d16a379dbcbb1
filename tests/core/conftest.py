"""Core tests run in-process against the SDK's own providers, captured with dashfrog_sdk.testing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashfrog_sdk import diagnostics
from dashfrog_sdk.testing import Capture, capture


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    diagnostics.reset()
    yield


@pytest.fixture
def exported_capture() -> Iterator[Capture]:
    """Like `dashfrog_capture`, but exactly what is exported: the start events of work that
    ended before they were sent are left out (README, Data model)."""
    with capture(every_start=False) as cap:
        yield cap
