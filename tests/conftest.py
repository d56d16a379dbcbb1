"""What every test shares: a test fails when the SDK swallowed an internal error during it.

The SDK's guard (`diagnostics.capture_internal_errors` / `internal_error`) keeps an exception
inside the SDK from reaching the application; here such an exception fails the test instead of
passing unseen. A test that provokes one on purpose says so with
``@pytest.mark.internal_errors``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashfrog_sdk import diagnostics


@pytest.fixture(autouse=True)
def _no_swallowed_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    seen: list[tuple[str, BaseException]] = []
    remove = diagnostics.watch_internal_errors(lambda name, exc: seen.append((name, exc)))
    try:
        yield
    finally:
        remove()
    if seen and request.node.get_closest_marker("internal_errors") is None:
        listed = "; ".join(f"{name}: {exc!r}" for name, exc in seen)
        pytest.fail(f"the SDK swallowed internal error(s): {listed}", pytrace=False)


pytest_plugins = ["pytester"]
