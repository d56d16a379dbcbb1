"""What every test shares: fresh diagnostics counters; a test fails when the SDK swallowed an
internal error during it; markers for what a test needs beyond the interpreter.

Markers (registered in pyproject, set here from the fixtures a test uses): ``collector`` (a real
rotel collector process), ``broker`` (Redis / RabbitMQ and Celery worker processes), ``browser``
(a real browser); deselect with e.g. ``-m "not broker"``.

The SDK's guard (`diagnostics.capture_internal_errors` / `internal_error`) keeps an exception
inside the SDK from reaching the application; here such an exception fails the test instead of
passing unseen. A test that provokes one on purpose says so with
``@pytest.mark.internal_errors``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from dashfrog_sdk import diagnostics
from dashfrog_sdk.testing import Capture, capture

# Fixture -> the marker of what it starts.
_NEEDS = {
    "collector": "collector",
    "receiver": "collector",
    "start_worker": "broker",
    "browser": "browser",
    "page": "browser",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in _NEEDS.items():
            if fixture in names:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    """Each test counts its own diagnostics (`stats()["diagnostics"]`)."""
    diagnostics.reset()
    yield


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


@pytest.fixture
def exported_capture() -> Iterator[Capture]:
    """Like `dashfrog_capture`, but exactly what is exported: the start events of work that
    ended before they were sent are left out (README, Data model)."""
    with capture(every_start=False) as cap:
        yield cap


pytest_plugins = ["pytester"]


# chDB (the in-process ClickHouse of the store tests) can die with SIGSEGV while the interpreter
# exits, after every test passed, when a session is still open (chdb-io/chdb-core#177: its
# engine threads outlive its atexit hook; one full run in CI did). So once pytest has reported
# everything (its summary and cache are written in pytest_sessionfinish), a run that loaded
# chDB leaves with its exit status at once, without the interpreter's teardown.
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status and "chdb" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
