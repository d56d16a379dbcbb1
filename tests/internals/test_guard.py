"""The one guard: an exception inside the SDK never reaches the application's code, is counted
and warned once through diagnostics, and fails the test it happened in (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from dashfrog_sdk import diagnostics, flow, step
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk.lifecycle import bus
from dashfrog_sdk.processors import FlowSpanProcessor
from dashfrog_sdk.testing import Capture

ROOT = Path(__file__).resolve().parents[2]


class _Broken(SpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("processor bug")

    def on_end(self, span: Any) -> None:
        raise RuntimeError("processor bug")


class _BrokenTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer bug")


@pytest.mark.internal_errors
def test_a_failure_entering_a_flow_or_step_never_reaches_the_block(
    dashfrog_capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "tracer", _BrokenTracer())
    ran = []
    with flow.start("guarded", tenant="t") as flow_id:
        with step.start("inner"):
            ran.append(flow_id)
    assert len(ran) == 1 and len(ran[0]) == 32  # the block ran, with an id like any other
    assert diagnostics.counts()["scope.enter_errors"] == 2


@pytest.mark.internal_errors
def test_a_broken_span_processor_never_reaches_the_caller() -> None:
    fanout = FlowSpanProcessor()
    fanout.children = (_Broken(),)
    provider = TracerProvider()
    provider.add_span_processor(fanout)
    with provider.get_tracer("app").start_as_current_span("work"):
        pass  # neither the start nor the end of the span raises here
    assert diagnostics.counts()["processor.errors"] == 2


@pytest.mark.internal_errors
def test_a_broken_sink_is_counted_and_the_others_still_get_the_batch(
    dashfrog_capture: Capture,
) -> None:
    def broken(batch: object) -> None:
        raise RuntimeError("sink bug")

    bus.add_sink(broken)
    try:
        with flow.start("sunk", tenant="t"):
            pass
        bus.flush()
    finally:
        bus.remove_sink(broken)
    dashfrog_capture.assert_flow("sunk", status="completed")
    assert diagnostics.counts()["events.sink_errors"] >= 1


@pytest.mark.internal_errors
def test_the_guard_is_a_context_manager_and_a_decorator() -> None:
    seen: list[tuple[str, BaseException]] = []
    remove = diagnostics.watch_internal_errors(lambda name, exc: seen.append((name, exc)))
    try:
        with diagnostics.capture_internal_errors("t.cm", "a test block"):
            raise ValueError("inside")

        @diagnostics.capture_internal_errors("t.deco", "a test function")
        def broken() -> None:
            raise KeyError("inside")

        broken()
        with pytest.raises(KeyboardInterrupt):  # the application's, not an internal error
            with diagnostics.capture_internal_errors("t.cm", "a test block"):
                raise KeyboardInterrupt
    finally:
        remove()
    assert [name for name, _ in seen] == ["t.cm", "t.deco"]
    assert diagnostics.counts()["t.cm"] == 1 and diagnostics.counts()["t.deco"] == 1


@pytest.mark.internal_errors  # the inner run's, seen in-process too
def test_the_root_fixture_fails_a_test_that_swallowed_an_internal_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        """
        import pytest
        from dashfrog_sdk import diagnostics

        def test_swallowed():
            with diagnostics.capture_internal_errors("t.swallowed", "a test"):
                raise ValueError("hidden")

        @pytest.mark.internal_errors
        def test_expected():
            with diagnostics.capture_internal_errors("t.swallowed", "a test"):
                raise ValueError("hidden")
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=2, errors=1)  # test_swallowed fails at its teardown
    result.stdout.fnmatch_lines(
        ["*swallowed internal error(s): t.swallowed: ValueError('hidden')*"]
    )
