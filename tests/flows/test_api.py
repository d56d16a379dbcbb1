"""The public API: with, async with, decorators, nesting, child flows, optional steps."""

from __future__ import annotations

import asyncio

import pytest

from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, step
from dashfrog_sdk.testing import Capture


def test_flow_and_steps_with_blocks(dashfrog_capture: Capture) -> None:
    with flow.start(name="data_import", tenant="acme-corp", env="production") as flow_id:
        with step.start("validate"):
            pass
        with step.start("process"):
            pass
    assert len(flow_id) == 32 and int(flow_id, 16) >= 0 and flow_id == flow_id.lower()
    f = dashfrog_capture.assert_flow(
        "data_import", status="completed", tenant="acme-corp", steps=["validate", "process"]
    )
    assert f.id == flow_id
    assert f.labels == {"env": "production"}
    assert [s.status for s in f.steps] == ["completed", "completed"]


def test_flow_id_is_not_the_trace_id(dashfrog_capture: Capture) -> None:
    with flow.start("a", tenant="t") as first, flow.start("b", tenant="t") as second:
        pass
    assert first != second
    spans = {s.name: s for s in dashfrog_capture.spans}
    assert format(spans["flow a"].context.trace_id, "032x") != first


async def test_async_with(dashfrog_capture: Capture) -> None:
    async with flow.start("async_flow", tenant="t1") as flow_id, step.start("fetch"):
        await asyncio.sleep(0)
    f = dashfrog_capture.assert_flow("async_flow", status="completed", steps=["fetch"])
    assert f.id == flow_id


def test_decorators_sync(dashfrog_capture: Capture) -> None:
    @step.start("validate", kind="strict")
    def validate(x: int) -> int:
        return x * 2

    @flow.start("decorated", tenant="t2")
    def run(x: int) -> int:
        return validate(x) + validate(x)

    assert run(2) == 8
    assert run.__name__ == "run"
    assert run(3) == 12  # a second call is a second flow
    flows = dashfrog_capture.flows
    assert [f.name for f in flows] == ["decorated", "decorated"]
    assert flows[0].id != flows[1].id
    assert [s.name for s in flows[0].steps] == ["validate", "validate"]
    assert flows[0].steps[0].attributes["kind"] == "strict"


async def test_decorators_async(dashfrog_capture: Capture) -> None:
    @step.start("io")
    async def io() -> str:
        await asyncio.sleep(0)
        return "ok"

    @flow.start("async_decorated", tenant="t3")
    async def run() -> list[str]:
        return list(await asyncio.gather(io(), io()))

    assert await run() == ["ok", "ok"]
    f = dashfrog_capture.assert_flow("async_decorated", status="completed", steps=["io", "io"])
    assert all(
        s.span.parent is not None and s.span.parent.span_id == f.span.context.span_id
        for s in f.steps
    )  # type: ignore[union-attr]


def test_nested_steps_parent_ids(dashfrog_capture: Capture) -> None:
    with flow.start("nested", tenant="t"), step.start("outer"), step.start("inner"):
        pass
    f = dashfrog_capture.flow("nested")
    outer, inner = f.step("outer"), f.step("inner")
    assert f.span is not None
    assert outer.span.parent is not None and outer.span.parent.span_id == f.span.context.span_id
    assert inner.span.parent is not None and inner.span.parent.span_id == outer.span.context.span_id
    assert inner.span.context.trace_id == f.span.context.trace_id


def test_child_flow(dashfrog_capture: Capture) -> None:
    with flow.start("parent", tenant="t", region="eu") as parent_id:
        with flow.start("child", tenant="t") as child_id:
            assert flow.current() is not None and flow.current().id == child_id  # type: ignore[union-attr]
            with step.start("in_child"):
                # Read while the child runs: its start event is sent (it has not ended).
                start_events = [
                    e
                    for e in dashfrog_capture.events_named(c.EVENT_FLOW_START)
                    if e.attributes[c.FLOW_ID] == child_id
                ]
        current = flow.current()
        assert current is not None and current.id == parent_id  # outer context restored
        with step.start("after_child"):
            pass
    child = dashfrog_capture.flow("child")
    parent = dashfrog_capture.flow("parent")
    assert child.id != parent_id and child.parent_id == parent_id
    assert child.span is not None and child.span.attributes[c.FLOW_PARENT_ID] == parent_id  # type: ignore[index]
    assert parent.parent_id is None
    assert [s.name for s in child.steps] == ["in_child"]
    assert [s.name for s in parent.steps] == ["after_child"]
    assert child.labels == {}  # labels belong to their flow
    assert start_events[0].attributes[c.FLOW_PARENT_ID] == parent_id


def test_optional_step_failure_does_not_fail_flow(dashfrog_capture: Capture) -> None:
    with flow.start("opt", tenant="t"):
        try:
            with step.start("enrich", optional=True):
                raise TimeoutError("slow enrichment")
        except TimeoutError:
            pass
    f = dashfrog_capture.assert_flow("opt", status="completed")
    enrich = f.step("enrich")
    assert enrich.status == "failed" and enrich.optional
    assert enrich.attributes[c.STEP_OPTIONAL] is True
    assert enrich.error == "TimeoutError: slow enrichment"


def test_step_outside_flow_is_still_a_span(
    dashfrog_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="dashfrog_sdk")
    with step.start("lonely"):
        pass
    spans = [s for s in dashfrog_capture.spans if s.name == "step lonely"]
    assert len(spans) == 1
    assert spans[0].attributes[c.STEP_NAME] == "lonely"  # type: ignore[index]
    assert c.FLOW_ID not in (spans[0].attributes or {})
    assert "outside any flow" in caplog.text
    assert not dashfrog_capture.events_named(c.EVENT_STEP_START)


def test_scope_object_cannot_be_entered_twice() -> None:
    scope = step.start("x")
    with scope, pytest.raises(RuntimeError, match="already active"):
        scope.__enter__()


def test_flow_event(dashfrog_capture: Capture) -> None:
    with flow.start("events", tenant="t") as flow_id:
        assert flow.event("payment_retried", attempt=2) is True
    ev = dashfrog_capture.events_named(c.EVENT_FLOW_EVENT)
    assert len(ev) == 1
    assert ev[0].attributes[c.EVENT_NAME_ATTR] == "payment_retried"
    assert ev[0].attributes["attempt"] == 2
    assert ev[0].attributes[c.FLOW_ID] == flow_id
    assert ev[0].attributes[c.TENANT] == "t"
    assert dashfrog_capture.flow("events").events[-1].name == c.EVENT_FLOW_EVENT


def test_flow_event_outside_flow_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    from dashfrog_sdk import diagnostics

    assert flow.event("nothing") is False
    assert flow.event("nothing") is False
    assert caplog.text.count("outside any flow") == 1
    assert diagnostics.counts()["flow.event_outside_flow"] == 2
