"""Statuses (ARCHITECTURE.md, "Status") and ending a flow from another context."""

from __future__ import annotations

import asyncio
import threading

import pytest
from opentelemetry import context as otel_context
from opentelemetry.trace import StatusCode

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, status, step
from dashfrog_sdk.lifecycle.exit import open_flows
from dashfrog_sdk.testing import Capture


def test_failed_step_fails_flow_even_when_caught(dashfrog_capture: Capture) -> None:
    with flow.start("order", tenant="t"):
        try:
            with step.start("charge"):
                raise RuntimeError("gateway down")
        except RuntimeError:
            pass
        with step.start("notify"):
            pass
    f = dashfrog_capture.assert_flow("order", status="failed", steps=["charge", "notify"])
    assert f.step("charge").status == "failed"
    assert f.step("notify").status == "completed"
    assert f.span is not None and f.span.status.status_code == StatusCode.ERROR
    assert f.span.attributes[c.ERROR_MESSAGE] == "gateway down"  # type: ignore[index]
    charge = f.step("charge").span
    assert charge.status.status_code == StatusCode.ERROR
    assert [e.name for e in charge.events] == ["exception"]


def test_exception_is_reraised_unchanged(dashfrog_capture: Capture) -> None:
    err = KeyError("sku")
    with pytest.raises(KeyError) as info, flow.start("order", tenant="t"), step.start("s"):
        raise err
    assert info.value is err
    dashfrog_capture.assert_flow("order", status="failed")


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_cancelled(dashfrog_capture: Capture, exc_type: type[BaseException]) -> None:
    with pytest.raises(exc_type), flow.start("order", tenant="t"), step.start("s"):
        raise exc_type()
    f = dashfrog_capture.assert_flow("order", status="cancelled")
    assert f.step("s").status == "cancelled"
    assert f.span is not None and f.span.status.status_code != StatusCode.ERROR


async def test_cancelled_task(dashfrog_capture: Capture) -> None:
    started = asyncio.Event()

    async def work() -> None:
        async with flow.start("order", tenant="t"), step.start("wait"):
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    f = dashfrog_capture.assert_flow("order", status="cancelled")
    assert f.step("wait").status == "cancelled"


def _start_and_capture(**labels: str) -> tuple[str, otel_context.Context]:
    """Start a flow with end_on_exit=False and return its context, as a task message would carry it."""
    with flow.start("async_order", tenant="acme", end_on_exit=False, **labels) as flow_id:
        with step.start("enqueue"):
            pass
        captured = otel_context.get_current()
    return flow_id, captured


def test_end_on_exit_false_then_end_elsewhere(dashfrog_capture: Capture) -> None:
    flow_id, captured = _start_and_capture(region="eu")
    assert flow.current() is None  # nothing leaks after the block
    f = dashfrog_capture.flow("async_order")
    assert f.status == "running"
    assert f.span is not None and f.span.attributes[c.FLOW_STATUS] == "running"  # type: ignore[index]
    assert not dashfrog_capture.events_named(c.EVENT_FLOW_END)

    def worker() -> None:  # later, another thread, only the captured context
        token = otel_context.attach(captured)
        try:
            with step.start("process"):
                pass
            assert flow.end() is True
            assert flow.end() is False  # a second end is a no-op
        finally:
            otel_context.detach(token)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    ends = dashfrog_capture.events_named(c.EVENT_FLOW_END)
    assert len(ends) == 1
    end = ends[0].attributes
    assert end[c.FLOW_ID] == flow_id
    assert end[c.FLOW_NAME] == "async_order"
    assert end[c.TENANT] == "acme"
    assert end["dashfrog.label.region"] == "eu"
    assert end[c.FLOW_STATUS] == "completed"
    # Enough for a backend to know the true start, end and duration, and join the flow span.
    assert end[c.FLOW_START_TIME] == f.span.start_time
    assert end[c.FLOW_END_TIME] >= f.span.end_time  # type: ignore[operator]
    assert end[c.FLOW_DURATION_MS] == pytest.approx(
        (end[c.FLOW_END_TIME] - f.span.start_time) / 1e6
    )
    assert end[c.FLOW_SPAN_ID] == format(f.span.context.span_id, "016x")
    assert end[c.FLOW_TRACE_ID] == format(f.span.context.trace_id, "032x")
    f = dashfrog_capture.flow("async_order")
    assert f.status == "completed"
    assert [s.name for s in f.steps] == ["enqueue", "process"]


def test_fail_elsewhere(dashfrog_capture: Capture) -> None:
    _, captured = _start_and_capture()
    token = otel_context.attach(captured)
    try:
        assert flow.fail(ValueError("card expired")) is True
    finally:
        otel_context.detach(token)
    end = dashfrog_capture.events_named(c.EVENT_FLOW_END)[0].attributes
    assert end[c.FLOW_STATUS] == "failed"
    assert end[c.ERROR_TYPE] == "ValueError" and end[c.ERROR_MESSAGE] == "card expired"


def test_failed_step_in_worker_makes_end_failed(dashfrog_capture: Capture) -> None:
    _, captured = _start_and_capture()
    token = otel_context.attach(captured)
    try:
        with pytest.raises(OSError), step.start("ship"):
            raise OSError("carrier api down")
        flow.end()
    finally:
        otel_context.detach(token)
    end = dashfrog_capture.events_named(c.EVENT_FLOW_END)[0].attributes
    assert end[c.FLOW_STATUS] == "failed"


def test_exception_escaping_end_on_exit_false_fails_flow(dashfrog_capture: Capture) -> None:
    with pytest.raises(ValueError), flow.start("api", tenant="t", end_on_exit=False):
        raise ValueError("bad payload")
    f = dashfrog_capture.flow("api")
    assert f.span is not None and f.span.attributes[c.FLOW_STATUS] == "failed"  # type: ignore[index]
    ends = dashfrog_capture.events_named(c.EVENT_FLOW_END)
    assert [e.attributes[c.FLOW_STATUS] for e in ends] == ["failed"]
    assert f.status == "failed"


def test_end_inside_the_block(dashfrog_capture: Capture) -> None:
    with flow.start("order", tenant="t"):
        assert flow.end() is True
        assert flow.end() is False
    f = dashfrog_capture.flow("order")
    assert f.status == "completed"
    assert len(dashfrog_capture.events_named(c.EVENT_FLOW_END)) == 1


def test_end_outside_flow_returns_false_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    assert flow.end() is False
    assert flow.end() is False
    assert flow.fail("x") is False
    assert caplog.text.count("flow.end() called outside any flow") == 1
    assert diagnostics.counts()["flow.end_outside_flow"] == 3


def test_fail_rejects_wrong_error_type() -> None:
    with pytest.raises(TypeError, match="flow.fail\\(\\): error must be an exception or a string"):
        flow.fail(42)  # type: ignore[arg-type]


def test_one_precedence_failed_over_cancelled_over_completed() -> None:
    assert status.worst(c.COMPLETED, c.CANCELLED) == c.CANCELLED
    assert status.worst(c.CANCELLED, c.FAILED, c.COMPLETED) == c.FAILED
    assert status.worst(c.RUNNING, c.COMPLETED) == c.COMPLETED
    assert status.of_exit(None) == c.COMPLETED
    assert status.of_exit(asyncio.CancelledError()) == c.CANCELLED
    assert status.of_exit(ValueError()) == c.FAILED


def test_a_flow_open_at_exit_after_a_failed_step_ends_failed(dashfrog_capture: Capture) -> None:
    # The same precedence as a cancellation reaching the block: the failure happened first.
    scope = flow.start("left_open", tenant="t")
    scope.__enter__()
    try:
        try:
            with step.start("charge"):
                raise RuntimeError("gateway down")
        except RuntimeError:
            pass
        assert open_flows.close_all("the process exited") == 1
    finally:
        scope.__exit__(None, None, None)
    end = [e for e in dashfrog_capture.events if e.name == c.EVENT_FLOW_END]
    assert [e.attributes[c.FLOW_STATUS] for e in end] == [c.FAILED]
    assert end[0].attributes[c.ERROR_MESSAGE] == "gateway down"


def test_an_explicit_fail_names_the_flow_error(dashfrog_capture: Capture) -> None:
    with flow.start("named", tenant="t", end_on_exit=False):
        try:
            with step.start("charge"):
                raise RuntimeError("first")
        except RuntimeError:
            pass
        flow.fail(ValueError("card expired"))
    end = [e for e in dashfrog_capture.events if e.name == c.EVENT_FLOW_END]
    assert end[0].attributes[c.ERROR_MESSAGE] == "card expired"


def test_a_retry_fails_its_step_not_the_flow(dashfrog_capture: Capture) -> None:
    """`raise self.retry()` inside a step (Celery's Retry, registered by with_celery): the
    attempt's step is failed, the flow is not, so no later attempt can find it failed whatever
    thread or process it runs in and whenever the retry hook runs."""

    class Retry(Exception):  # stands in for celery.exceptions.Retry (with_celery registers it)
        pass

    status.register_retry(Retry)
    with flow.start("retried", tenant="t"):
        with pytest.raises(Retry), step.start("attempt"):
            raise Retry("again")
    f = dashfrog_capture.assert_flow("retried", status=c.COMPLETED)
    assert [s.status for s in f.steps] == [c.FAILED]
