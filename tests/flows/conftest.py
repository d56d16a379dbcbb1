"""Core tests run in-process against the SDK's own providers, captured with dashfrog_sdk.testing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashfrog_sdk import diagnostics


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    diagnostics.reset()
    yield
