"""The wire contract: attribute names and values on spans, events and baggage (ARCHITECTURE.md, "Data model")."""

from __future__ import annotations

from opentelemetry import baggage, trace
from opentelemetry.trace import StatusCode

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, step
from dashfrog_sdk.testing import Capture

FLOW_ATTRS = {c.FLOW_NAME: "order", c.TENANT: "customer-123", "dashfrog.label.region": "eu"}


def test_flow_and_step_span_attributes(dashfrog_capture: Capture) -> None:
    with flow.start("order", tenant="customer-123", region="eu", priority=3, vip=True) as flow_id:
        with step.start("charge", amount=42.5, currency="EUR"):
            pass
    f = dashfrog_capture.flow("order")
    assert f.span is not None
    attrs = dict(f.span.attributes or {})
    assert attrs[c.FLOW_ID] == flow_id
    assert attrs[c.FLOW_NAME] == "order"
    assert attrs[c.TENANT] == "customer-123"
    # Labels are strings everywhere so every service compares them equal.
    assert attrs["dashfrog.label.region"] == "eu"
    assert attrs["dashfrog.label.priority"] == "3"
    assert attrs["dashfrog.label.vip"] == "true"
    assert attrs[c.FLOW_STATUS] == "completed"
    assert attrs[c.FLOW_END_ON_EXIT] is True
    assert f.span.name == "flow order"
    assert f.span.kind == trace.SpanKind.INTERNAL
    charge = f.step("charge")
    s = dict(charge.span.attributes or {})
    assert s[c.FLOW_ID] == flow_id and s[c.TENANT] == "customer-123"
    assert s["dashfrog.label.priority"] == "3"
    assert s[c.STEP_NAME] == "charge" and s[c.STEP_STATUS] == "completed"
    assert s["amount"] == 42.5 and s["currency"] == "EUR"
    assert c.STEP_OPTIONAL not in s
    assert charge.span.name == "step charge"


def test_every_span_inside_a_flow_is_tenant_labelled(dashfrog_capture: Capture) -> None:
    tracer = trace.get_tracer("user.code")
    with tracer.start_as_current_span("before"):
        pass
    with flow.start("order", tenant="customer-123", region="eu") as flow_id:
        with tracer.start_as_current_span("user span"):
            with tracer.start_as_current_span("deeper"):
                pass
        with step.start("s"), tracer.start_as_current_span("inside step"):
            pass
    with tracer.start_as_current_span("after"):
        pass
    spans = {s.name: dict(s.attributes or {}) for s in dashfrog_capture.spans}
    for name in ("user span", "deeper", "inside step"):
        assert spans[name][c.FLOW_ID] == flow_id, name
        for key, value in FLOW_ATTRS.items():
            assert spans[name][key] == value, (name, key)
    for name in ("before", "after"):
        assert c.FLOW_ID not in spans[name]


def test_lifecycle_events(dashfrog_capture: Capture) -> None:
    with flow.start("order", tenant="customer-123", region="eu", timeout=30) as flow_id:
        with step.start("validate"):
            running = dashfrog_capture.events  # sent while the flow and the step run
    f = dashfrog_capture.flow("order")
    assert f.span is not None
    names = [e.name for e in f.events]
    assert names == [c.EVENT_FLOW_START, c.EVENT_STEP_START]  # no end event: ended at its span
    assert [e.name for e in running] == names
    start, step_start = f.events
    for ev in (start, step_start):
        assert ev.attributes[c.FLOW_ID] == flow_id
        for key, value in FLOW_ATTRS.items():
            assert ev.attributes[key] == value
        assert ev.trace_id == f.span.context.trace_id
    assert start.span_id == f.span.context.span_id
    assert start.attributes[c.FLOW_TIMEOUT] == 30.0
    assert start.attributes[c.FLOW_END_ON_EXIT] is True
    assert step_start.span_id == f.step("validate").span.context.span_id
    assert step_start.attributes[c.STEP_NAME] == "validate"
    assert start.timestamp == f.span.start_time


def test_no_start_event_for_work_ended_before_it_would_be_sent(
    exported_capture: Capture,
) -> None:
    # Started and ended within one dispatcher interval: the spans say everything the start
    # events would have (README, Data model), so none is sent; the flow is still all there.
    with flow.start("quick", tenant="t", region="eu", timeout=30) as flow_id:
        with step.start("a"):
            pass
        with step.start("b"):
            flow.event("noted")
    f = exported_capture.assert_flow("quick", status="completed", steps=["a", "b"])
    assert [e.name for e in f.events] == [c.EVENT_FLOW_EVENT]
    assert f.span is not None and f.span.attributes is not None
    assert f.span.attributes[c.FLOW_ID] == flow_id
    assert f.span.attributes[c.FLOW_TIMEOUT] == 30.0
    assert f.span.attributes[c.FLOW_END_ON_EXIT] is True
    assert f.tenant == "t" and f.labels == {"region": "eu"}
    # A flow that goes on elsewhere (end_on_exit=False) keeps its start event: it runs on.
    with flow.start("handed_off", tenant="t", end_on_exit=False):
        with step.start("queued"):
            pass
    handed = exported_capture.flow("handed_off")
    assert [e.name for e in handed.events] == [c.EVENT_FLOW_START]
    assert handed.status == c.RUNNING
    assert diagnostics.counts()["events.starts_not_sent"] >= 4


def test_events_are_sent_before_the_flow_ends(dashfrog_capture: Capture) -> None:
    with flow.start("long", tenant="t"), step.start("current_step"):
        names = [e.name for e in dashfrog_capture.events]
        assert names == [c.EVENT_FLOW_START, c.EVENT_STEP_START]
        assert dashfrog_capture.spans == []  # nothing ended yet, yet the flow is visible


def test_baggage_inside_flow() -> None:
    with flow.start("order", tenant="customer-123", region="eu") as flow_id:
        bag = baggage.get_all()
        span_ctx = trace.get_current_span().get_span_context()
        assert bag[c.FLOW_ID] == flow_id
        assert bag[c.FLOW_NAME] == "order"
        assert bag[c.TENANT] == "customer-123"
        assert bag["dashfrog.label.region"] == "eu"
        assert bag[c.FLOW_SPAN_ID] == format(span_ctx.span_id, "016x")
        assert bag[c.FLOW_TRACE_ID] == format(span_ctx.trace_id, "032x")
        assert int(str(bag[c.FLOW_START_TIME])) > 0
    assert c.FLOW_ID not in baggage.get_all()


def test_user_baggage_is_kept() -> None:
    from opentelemetry import context

    token = context.attach(baggage.set_baggage("user.key", "v"))
    try:
        with flow.start("order", tenant="t"):
            assert baggage.get_baggage("user.key") == "v"
            with flow.start("child", tenant="t") as child:
                assert baggage.get_baggage(c.FLOW_ID) == child
                assert baggage.get_baggage("user.key") == "v"
    finally:
        context.detach(token)


def test_failed_flow_span_status_and_exception(dashfrog_capture: Capture) -> None:
    try:
        with flow.start("order", tenant="t"):
            raise ValueError("card declined")
    except ValueError:
        pass
    f = dashfrog_capture.flow("order")
    assert f.span is not None
    assert f.span.status.status_code == StatusCode.ERROR
    assert f.span.attributes[c.FLOW_STATUS] == "failed"  # type: ignore[index]
    assert f.span.attributes[c.ERROR_TYPE] == "ValueError"  # type: ignore[index]
    exc_events = [e for e in f.span.events if e.name == "exception"]
    assert exc_events and exc_events[0].attributes["exception.message"] == "card declined"  # type: ignore[index]
