"""The hot path's shortcuts give exactly what the plain OpenTelemetry calls give (DESIGN.md,
principle 4): attributes written straight into SDK spans, validated flow kinds reused, lifecycle
records that hold no FlowState."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    set_span_in_context,
)

from dashfrog_sdk import _records, events, flow, step
from dashfrog_sdk import conventions as c
from dashfrog_sdk._spans import stamp, stamp_one
from dashfrog_sdk.context import FlowState
from dashfrog_sdk.exporting.exit import open_flows
from dashfrog_sdk.testing import Capture

VALUES = {"s": "x", "i": 3, "f": 2.5, "b": True, "t": ("a", "b"), "long": "y" * 300}


def test_stamp_equals_set_attributes() -> None:
    tracer = TracerProvider().get_tracer("t")
    fast, slow = tracer.start_span("fast"), tracer.start_span("slow")
    stamp(fast, VALUES)
    stamp_one(fast, "one", 1)
    slow.set_attributes(VALUES)
    slow.set_attribute("one", 1)
    assert dict(fast.attributes or {}) == dict(slow.attributes or {})
    assert list(fast.attributes or {}) == list(slow.attributes or {})


def test_stamp_honours_span_limits() -> None:
    # With a value-length or count limit the SDK's own cleaning must run: same result as OTel.
    limits = SpanLimits(max_span_attribute_length=5, max_span_attributes=3)
    tracer = TracerProvider(span_limits=limits).get_tracer("t")
    fast, slow = tracer.start_span("fast"), tracer.start_span("slow")
    stamp(fast, VALUES)
    slow.set_attributes(VALUES)
    assert dict(fast.attributes or {}) == dict(slow.attributes or {})
    assert len(fast.attributes or {}) == 3


def test_stamp_on_ended_and_non_recording_spans_is_harmless() -> None:
    span = TracerProvider().get_tracer("t").start_span("s")
    span.end()
    stamp(span, {"late": 1})  # the SDK ignores (and logs) writes after end, as set_attributes
    assert "late" not in (span.attributes or {})
    stamp(INVALID_SPAN, VALUES)
    stamp_one(INVALID_SPAN, "k", "v")


def test_label_values_equal_as_keys_stay_distinct(dashfrog_capture: Capture) -> None:
    # True == 1 == 1.0 in a dict key: the cache of validated flow kinds must not mix them up.
    for value in ("1", True, 1, 1.0, "1"):
        with flow.start("kinds", tenant="t", v=value):
            pass
    assert [f.labels["v"] for f in dashfrog_capture.flows] == ["1", "true", "1", "1.0", "1"]


def test_cached_kind_still_rejects_bad_arguments() -> None:
    with flow.start("cached", tenant="t", region="eu"):
        pass
    with pytest.raises(TypeError, match="end_on_exit"):
        flow.start("cached", tenant="t", region="eu", end_on_exit="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        flow.start("cached", tenant="t", region="eu", timeout=-1)
    with pytest.raises(TypeError, match="label 'region'"):
        flow.start("cached", tenant="t", region=["eu"])  # type: ignore[arg-type]


def test_flow_labels_are_read_only(dashfrog_capture: Capture) -> None:
    with flow.start("ro", tenant="t", region="eu"):
        info = flow.current()
        assert info is not None and info.labels == {"region": "eu"}
        with pytest.raises(TypeError):
            info.labels["region"] = "us"  # type: ignore[index]
    with flow.start("ro", tenant="t", region="eu"):
        info = flow.current()
        assert info is not None and dict(info.labels) == {"region": "eu"}


def test_step_name_checks_inlined() -> None:
    with pytest.raises(ValueError, match="step.start\\(\\): name must be a non-empty string"):
        step.start("   ")
    with pytest.raises(ValueError, match="at most 256"):
        step.start("x" * 257)
    with pytest.raises(TypeError, match="optional must be True or False"):
        step.start("s", optional=1)  # type: ignore[arg-type]


def test_waiting_events_are_nothing_for_the_garbage_collector(dashfrog_capture: Capture) -> None:
    # Queued lifecycle events are their fields, one after the other: strings, numbers and the
    # flow's shared attribute dict. No tuple, FlowState or NamedTuple per event that Python's
    # garbage collector would count and visit while it waits for the dispatcher.
    events.stop()
    try:
        with flow.start("gc", tenant="t"):
            with step.start("a"):
                pass
            flow.event("noted", n=1)
        fields = list(events._bus.queue)
    finally:
        events.start()
    width = len(events.Lifecycle._fields)
    assert len(fields) == 5 * width
    assert fields[::width] == [
        c.EVENT_FLOW_START,
        c.EVENT_STEP_START,
        events.STEP_END,
        c.EVENT_FLOW_EVENT,
        events.FLOW_CLOSE,
    ]
    assert not any(isinstance(x, FlowState) or gc.is_tracked(x) for x in fields)
    assert len(open_flows) == 0
    # ...and the sinks get them back whole.
    f = dashfrog_capture.flow("gc")
    assert [e.name for e in f.events] == [
        c.EVENT_FLOW_START,
        c.EVENT_STEP_START,
        c.EVENT_FLOW_EVENT,
    ]


def test_open_flows_registry_follows_the_with_block() -> None:
    scope = flow.start("registry", tenant="t")
    before = len(open_flows)
    scope.__enter__()
    assert len(open_flows) == before + 1
    scope.__exit__(None, None, None)
    assert len(open_flows) == before


def _emit_both_ways(limits: LogRecordLimits | None = None) -> tuple[list[Any], list[Any]]:
    got, paths = [], []
    for fast in (True, False):
        exporter = InMemoryLogRecordExporter()
        provider = LoggerProvider(
            resource=Resource.create({"service.name": "svc"}), log_record_limits=limits
        )
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logger = provider.get_logger("scope", "1.0")
        emit = _records.emitter(logger) if fast else logger.emit
        paths.append(emit != logger.emit)
        span = NonRecordingSpan(SpanContext(7, 9, is_remote=False, trace_flags=TraceFlags(1)))
        emit(
            LogRecord(
                timestamp=10,
                observed_timestamp=11,
                context=set_span_in_context(span),
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body="b",
                attributes={"a": "x", "n": 1, "f": 1.5, "t": ("p", "q"), "long": "z" * 50},
                event_name="dashfrog.flow.start",
            )
        )
        got.append(exporter.get_finished_logs())
    assert paths == [limits is None, False]  # the fast path is taken only without limits
    return got[0], got[1]


def _fields(records: list[Any]) -> list[tuple[Any, ...]]:
    out = []
    for readable in records:
        r = readable.log_record
        out.append(
            (
                dict(r.attributes),
                readable.dropped_attributes,
                r.timestamp,
                r.observed_timestamp,
                r.trace_id,
                r.span_id,
                r.trace_flags,
                r.severity_number,
                r.body,
                r.event_name,
                readable.resource.attributes.get("service.name"),
                readable.instrumentation_scope.name,
                readable.instrumentation_scope.version,
            )
        )
    return out


def test_fast_log_records_equal_the_sdk_path() -> None:
    fast, slow = _emit_both_ways()
    assert len(fast) == len(slow) == 1
    assert _fields(fast) == _fields(slow)


@pytest.mark.filterwarnings("ignore::opentelemetry.sdk._logs.LogRecordDroppedAttributesWarning")
def test_log_record_limits_take_the_sdk_path() -> None:
    fast, slow = _emit_both_ways(LogRecordLimits(max_attributes=3, max_attribute_length=4))
    assert _fields(fast) == _fields(slow)
    assert len(fast[0].log_record.attributes) == 3
