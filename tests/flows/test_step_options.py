"""`step.start(raise_on_error=False, retries=..., timeout=...)`: error isolation, retries and
timeouts (dashfrog_sdk.status: "A step's timeout", "Error isolation", "A step's retries")."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import StatusCode

from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, status, step
from dashfrog_sdk import step as step_module
from dashfrog_sdk.testing import Capture, CapturedStep
from tests.support import ROOT


def _steps(capture: Capture, flow_name: str, name: str) -> list[CapturedStep]:
    attempts = capture.flow(flow_name).attempts(name)
    assert [s.attempt for s in attempts] == [
        s.attributes.get(c.STEP_ATTEMPT) for s in attempts
    ]  # the testing helper reads the wire name
    return attempts


@pytest.fixture(params=["asyncio.timeout", "3.10 fallback"])
def timeout_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Python 3.10 has no asyncio.timeout: its path (step._Deadline) runs here too.
    if request.param == "3.10 fallback":
        monkeypatch.setattr(step_module, "_FORCE_DEADLINE", True)
    yield request.param


# -- raise_on_error=False ---------------------------------------------------------------------


def test_isolated_step_is_failed_swallowed_and_the_flow_goes_on(dashfrog_capture: Capture) -> None:
    reached = []
    with flow.start("order", tenant="t"):
        with step.start("enrich", raise_on_error=False):
            raise ConnectionError("enrichment service down")
        reached.append("after")
        with step.start("ship"):
            pass
    assert reached == ["after"]
    f = dashfrog_capture.assert_flow("order", status="completed", steps=["enrich", "ship"])
    enrich = f.step("enrich")
    assert enrich.status == "failed"
    assert enrich.error == "ConnectionError: enrichment service down"
    assert enrich.span.status.status_code == StatusCode.ERROR
    assert [e.name for e in enrich.span.events] == ["exception"]
    assert enrich.attributes[c.STEP_RAISE_ON_ERROR] is False


async def test_isolated_async_with_and_decorators(dashfrog_capture: Capture) -> None:
    @step.start("sync_part", raise_on_error=False)
    def sync_part() -> int:
        raise ValueError("bad row")

    @step.start("async_part", raise_on_error=False)
    async def async_part() -> int:
        raise ValueError("bad page")

    async with flow.start("job", tenant="t"):
        async with step.start("block", raise_on_error=False):
            raise KeyError("k")
        assert sync_part() is None  # a swallowed error: the function returns None
        assert await async_part() is None
    f = dashfrog_capture.assert_flow("job", status="completed")
    assert [(s.name, s.status) for s in f.steps] == [
        ("block", "failed"),
        ("sync_part", "failed"),
        ("async_part", "failed"),
    ]


def test_isolation_covers_the_steps_inside(dashfrog_capture: Capture) -> None:
    with flow.start("order", tenant="t"), step.start("enrich", raise_on_error=False):
        with step.start("lookup"):  # not optional itself: its failure is the isolated step's
            raise RuntimeError("no such customer")
    f = dashfrog_capture.assert_flow("order", status="completed")
    assert f.step("lookup").status == "failed" and f.step("enrich").status == "failed"


def test_isolated_and_optional_swallows(dashfrog_capture: Capture) -> None:
    with flow.start("order", tenant="t"):
        with step.start("enrich", optional=True, raise_on_error=False):
            raise RuntimeError("x")
        with pytest.raises(RuntimeError), step.start("optional_only", optional=True):
            raise RuntimeError("optional re-raises")
    f = dashfrog_capture.assert_flow("order", status="completed")
    assert f.step("enrich").status == "failed" and f.step("optional_only").status == "failed"


def test_isolation_never_swallows_a_cancellation(dashfrog_capture: Capture) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        flow.start("order", tenant="t"),
        step.start("s", raise_on_error=False),
    ):
        raise KeyboardInterrupt
    assert dashfrog_capture.flow("order").step("s").status == "cancelled"


def test_a_step_without_options_records_no_option_attributes(dashfrog_capture: Capture) -> None:
    scope = step.start("plain")
    assert scope._options is None and type(scope) is step.StepScope
    with flow.start("order", tenant="t"), scope:
        pass
    attrs = dashfrog_capture.flow("order").step("plain").attributes
    assert not {k for k in attrs if k.startswith("dashfrog.step.")} - {c.STEP_NAME, c.STEP_STATUS}


# -- retries --------------------------------------------------------------------------------


def test_each_attempt_is_a_step_span_and_the_last_decides(dashfrog_capture: Capture) -> None:
    calls = []

    @step.start("fetch_rates", retries=3, retry_on=(TimeoutError,))
    def fetch_rates() -> dict[str, float]:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError(f"slow #{len(calls)}")
        return {"EUR": 1.0}

    with flow.start("pricing", tenant="t"):
        assert fetch_rates() == {"EUR": 1.0}
    dashfrog_capture.assert_flow("pricing", status="completed")
    attempts = _steps(dashfrog_capture, "pricing", "fetch_rates")
    assert [
        (
            s.attributes[c.STEP_ATTEMPT],
            s.attributes[c.STEP_ATTEMPTS],
            s.status,
            s.attributes.get(c.STEP_RETRIED, False),
            s.error,
        )
        for s in attempts
    ] == [
        (1, 4, "failed", True, "TimeoutError: slow #1"),
        (2, 4, "failed", True, "TimeoutError: slow #2"),
        (3, 4, "completed", False, None),
    ]
    # The attempts' start events carry their number too (a running attempt shows it).
    starts = dashfrog_capture.events_named(c.EVENT_STEP_START)
    assert [e.attributes[c.STEP_ATTEMPT] for e in starts] == [1, 2, 3]


def test_the_last_attempt_failing_fails_the_flow_and_raises(dashfrog_capture: Capture) -> None:
    @step.start("fetch", retries=2)
    def fetch() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError), flow.start("pricing", tenant="t"):
        fetch()
    dashfrog_capture.assert_flow("pricing", status="failed")
    attempts = _steps(dashfrog_capture, "pricing", "fetch")
    assert [s.status for s in attempts] == ["failed"] * 3
    assert [s.attributes.get(c.STEP_RETRIED, False) for s in attempts] == [True, True, False]


def test_a_caught_last_failure_still_fails_the_flow(dashfrog_capture: Capture) -> None:
    @step.start("fetch", retries=1)
    def fetch() -> None:
        raise ConnectionError("down")

    with flow.start("pricing", tenant="t"):
        with contextlib.suppress(ConnectionError):
            fetch()
    dashfrog_capture.assert_flow("pricing", status="failed")


def test_only_retry_on_is_retried(dashfrog_capture: Capture) -> None:
    @step.start("fetch", retries=5, retry_on=TimeoutError)
    def fetch() -> None:
        raise ValueError("not transient")

    with pytest.raises(ValueError), flow.start("pricing", tenant="t"):
        fetch()
    assert len(_steps(dashfrog_capture, "pricing", "fetch")) == 1


def test_retries_with_isolation_swallow_only_the_last(dashfrog_capture: Capture) -> None:
    @step.start("fetch", retries=2, raise_on_error=False)
    def fetch() -> int:
        raise ConnectionError("down")

    with flow.start("pricing", tenant="t"):
        assert fetch() is None
    dashfrog_capture.assert_flow("pricing", status="completed")
    assert len(_steps(dashfrog_capture, "pricing", "fetch")) == 3


def test_backoff_waits_and_doubles(dashfrog_capture: Capture) -> None:
    @step.start("fetch", retries=2, backoff=0.05)
    def fetch() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError), flow.start("pricing", tenant="t"):
        fetch()
    spans = [s.span for s in _steps(dashfrog_capture, "pricing", "fetch")]
    gaps = [(b.start_time or 0) - (a.end_time or 0) for a, b in itertools.pairwise(spans)]
    assert gaps[0] >= 0.05e9 and gaps[1] >= 0.1e9


def test_backoff_doubles_up_to_a_bound() -> None:
    options = step.start("s", retries=100, backoff=0.5)._options
    assert options is not None
    assert [options.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert options.delay(100) == step_module.MAX_BACKOFF_S  # never an overflowing sleep
    big = step.start("s", retries=3, backoff=1000)._options
    assert big is not None and big.delay(3) == 1000


async def test_async_retries(dashfrog_capture: Capture) -> None:
    calls = []

    @step.start("fetch", retries=2)
    async def fetch() -> str:
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return "ok"

    async with flow.start("pricing", tenant="t"):
        assert await fetch() == "ok"
    dashfrog_capture.assert_flow("pricing", status="completed")
    assert [s.status for s in _steps(dashfrog_capture, "pricing", "fetch")] == [
        "failed",
        "completed",
    ]


def test_retries_on_a_with_block_raise_at_once(dashfrog_capture: Capture) -> None:
    with flow.start("pricing", tenant="t"):
        with pytest.raises(TypeError, match=r"retries=3.*decorate a function"):
            with step.start("fetch", retries=3):
                pytest.fail("the body must not run")
    assert dashfrog_capture.flow("pricing").steps == []


async def test_retries_on_an_async_with_block_raise_at_once() -> None:
    with pytest.raises(TypeError, match="retries"):
        async with step.start("fetch", retries=1):
            pytest.fail("the body must not run")


# -- timeout --------------------------------------------------------------------------------


async def test_async_step_is_cancelled_at_its_timeout(
    dashfrog_capture: Capture, timeout_impl: str
) -> None:
    reached = []
    with pytest.raises(TimeoutError, match=r"step 'crunch' timed out after 0.05 s"):
        async with flow.start("report", tenant="t"), step.start("crunch", timeout=0.05):
            await asyncio.sleep(30)
            reached.append("never")
    assert reached == []
    f = dashfrog_capture.assert_flow("report", status="failed")
    crunch = f.step("crunch")
    assert crunch.status == "timed_out"
    assert crunch.error == "TimeoutError: step 'crunch' timed out after 0.05 s"
    assert crunch.attributes[c.STEP_TIMEOUT] == 0.05
    assert (crunch.span.end_time or 0) - (crunch.span.start_time or 0) < 10e9


async def test_async_decorated_step_timeout(dashfrog_capture: Capture, timeout_impl: str) -> None:
    @step.start("crunch", timeout=0.05)
    async def crunch() -> None:
        await asyncio.sleep(30)

    async with flow.start("report", tenant="t"):
        with pytest.raises(TimeoutError):
            await crunch()
        await asyncio.sleep(0)  # the task is not left cancelled
    dashfrog_capture.assert_flow("report", status="failed")


async def test_async_step_within_its_timeout_completes(
    dashfrog_capture: Capture, timeout_impl: str
) -> None:
    async with flow.start("report", tenant="t"):
        async with step.start("crunch", timeout=5):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)  # no cancellation left pending
    f = dashfrog_capture.assert_flow("report", status="completed")
    assert f.step("crunch").status == "completed"


async def test_a_timed_out_optional_or_isolated_step_does_not_fail_the_flow(
    dashfrog_capture: Capture, timeout_impl: str
) -> None:
    async with flow.start("report", tenant="t"):
        with pytest.raises(TimeoutError):
            async with step.start("optional", optional=True, timeout=0.02):
                await asyncio.sleep(30)
        async with step.start("isolated", raise_on_error=False, timeout=0.02):
            await asyncio.sleep(30)
    f = dashfrog_capture.assert_flow("report", status="completed")
    assert f.step("optional").status == f.step("isolated").status == "timed_out"


async def test_an_outer_cancellation_stays_a_cancellation(
    dashfrog_capture: Capture, timeout_impl: str
) -> None:
    started = asyncio.Event()

    async def work() -> None:
        async with flow.start("report", tenant="t"), step.start("crunch", timeout=30):
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dashfrog_capture.flow("report").step("crunch").status == "cancelled"


async def test_retries_after_an_async_timeout(dashfrog_capture: Capture) -> None:
    calls = []

    @step.start("fetch", retries=1, timeout=0.05, retry_on=TimeoutError)
    async def fetch() -> str:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(30)
        return "ok"

    async with flow.start("pricing", tenant="t"):
        assert await fetch() == "ok"
    dashfrog_capture.assert_flow("pricing", status="completed")
    assert [s.status for s in _steps(dashfrog_capture, "pricing", "fetch")] == [
        "timed_out",
        "completed",
    ]


def test_sync_step_past_its_timeout_is_timed_out_not_interrupted(
    dashfrog_capture: Capture,
) -> None:
    @step.start("crunch", timeout=0.01)
    def crunch() -> str:
        time.sleep(0.05)
        return "done anyway"

    with flow.start("report", tenant="t"):
        assert crunch() == "done anyway"  # the thread ran on; nothing is raised
    f = dashfrog_capture.assert_flow("report", status="failed")
    crunch_step = f.step("crunch")
    assert crunch_step.status == "timed_out"
    assert crunch_step.attributes[c.ERROR_TYPE] == "TimeoutError"
    assert "over its timeout of 0.01 s" in str(crunch_step.attributes[c.ERROR_MESSAGE])


def test_sync_step_within_its_timeout_or_failing_keeps_its_status(
    dashfrog_capture: Capture,
) -> None:
    with flow.start("report", tenant="t"):
        with step.start("quick", timeout=30):
            pass
        with step.start("late_but_optional", timeout=0.001, optional=True):
            time.sleep(0.01)
    f = dashfrog_capture.assert_flow("report", status="completed")
    assert f.step("quick").status == "completed"
    assert f.step("late_but_optional").status == "timed_out"


# -- wrong arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": "30s"}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": "3"}, "retries"),
        ({"retries": 1, "backoff": math.nan}, "backoff"),
        ({"retries": 1, "backoff": math.inf}, "backoff"),
        ({"retries": 1, "backoff": -0.5}, "backoff"),
        ({"retries": 1, "backoff": True}, "backoff"),
        ({"retries": 1, "retry_on": "TimeoutError"}, "retry_on"),
        ({"retries": 1, "retry_on": (TimeoutError, 3)}, "retry_on"),
        ({"retries": 1, "retry_on": ()}, "retry_on"),
        ({"retries": 1, "retry_on": KeyboardInterrupt}, "retry_on"),
        ({"backoff": 1.0}, "backoff"),
        ({"retry_on": TimeoutError}, "retry_on"),
        ({"raise_on_error": 0}, "raise_on_error"),
        ({"raise_on_error": None}, "raise_on_error"),
    ],
)
def test_wrong_arguments_raise_at_once_naming_them(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises((TypeError, ValueError), match=named):
        step.start("s", **kwargs)  # type: ignore[call-overload]


class _QueueRetry(Exception):
    """A task queue's "run this again" (as Celery's Retry, registered by with_celery)."""


def test_a_task_queue_retry_is_never_retried_by_the_step(dashfrog_capture: Capture) -> None:
    status.register_retry(_QueueRetry)
    calls = []

    @step.start("fetch", retries=3)
    def fetch() -> None:
        calls.append(1)
        raise _QueueRetry

    with flow.start("pricing", tenant="t"):
        with pytest.raises(_QueueRetry):
            fetch()
    assert len(calls) == 1  # the queue runs the attempt again, not the step
    dashfrog_capture.assert_flow("pricing", status="completed")  # and it fails no flow


def test_type_checkers_know_which_steps_may_swallow(tmp_path: Path) -> None:
    """A plain step's `with` never suppresses (a function returning inside one needs no return
    after it); `raise_on_error=False` gives an IsolatedStepScope, whose `with` may."""
    pytest.importorskip("mypy")
    user = tmp_path / "user_code.py"
    user.write_text(
        "from typing_extensions import assert_type\n"
        "from dashfrog_sdk import step\n"
        "from dashfrog_sdk.step import IsolatedStepScope, StepScope\n"
        "def plain() -> int:\n"
        "    with step.start('s', retries=0, timeout=1.0):\n"
        "        return 1\n"
        "def isolated() -> int | None:\n"
        "    with step.start('s', raise_on_error=False):\n"
        "        return 1\n"
        "    return None\n"
        "assert_type(step.start('s'), StepScope)\n"
        "assert_type(step.start('s', raise_on_error=False), IsolatedStepScope)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
