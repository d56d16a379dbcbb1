"""The hot path's shortcuts give exactly what the plain OpenTelemetry calls give (ARCHITECTURE.md,
"Hot path"): attributes written straight into SDK spans, validated flow kinds reused, lifecycle
records that hold no FlowState."""

from __future__ import annotations

import enum
import gc
import inspect
import json
import pickle
import signal
from typing import Any

import pytest
from opentelemetry import baggage
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

from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, step
from dashfrog_sdk._otel import PUBLIC_ONLY
from dashfrog_sdk._otel import log_records as _records
from dashfrog_sdk._otel.spans import stamp, stamp_one
from dashfrog_sdk.context import FlowState
from dashfrog_sdk.lifecycle import bus as events
from dashfrog_sdk.lifecycle import records
from dashfrog_sdk.lifecycle.exit import open_flows
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


def test_flow_info_is_the_flows_own(dashfrog_capture: Capture) -> None:
    # Flows of one kind share validated attributes, but each FlowInfo is its own plain data.
    with flow.start("own", tenant="t", region="eu"):
        info = flow.current()
        assert info is not None and type(info.labels) is dict
        info.labels["region"] = "us"  # type: ignore[index]
        assert pickle.loads(pickle.dumps(info)) == info
        assert json.loads(json.dumps(info._asdict()))["labels"] == {"region": "us"}
    with flow.start("own", tenant="t", region="eu"):
        info = flow.current()
        assert info is not None and info.labels == {"region": "eu"}
    assert [f.labels["region"] for f in dashfrog_capture.flows] == ["eu", "eu"]


class Region(str, enum.Enum):
    EU = "eu"


class Caseless(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.lower())


def test_str_subclasses_are_recorded_as_their_text(dashfrog_capture: Capture) -> None:
    # A (str, Enum) member or a str type with its own __eq__/__hash__ is recorded as its
    # characters, on spans and in baggage alike, whatever plain-str flow ran before.
    for value in ("eu", Caseless("EU"), Region.EU, Caseless("Eu")):
        with flow.start("sub", tenant=Caseless("Acme"), region=value):
            members = baggage.get_all()
            assert type(members["dashfrog.label.region"]) is str
            assert members["dashfrog.label.region"] == str.__str__(value)
            assert members[c.TENANT] == "Acme"
    assert [f.labels["region"] for f in dashfrog_capture.flows] == ["eu", "EU", "eu", "Eu"]
    assert {f.tenant for f in dashfrog_capture.flows} == {"Acme"}


def test_a_label_whose_hash_raises_gets_the_label_error() -> None:
    class Unhashable(str):
        def __hash__(self) -> int:
            raise ValueError("no hash")

    with flow.start("h", tenant="t", region=Unhashable("eu")):  # a str: valid, recorded as text
        info = flow.current()
        assert info is not None and info.labels == {"region": "eu"}
    with pytest.raises(TypeError, match="label 'region' must be str, int, float or bool"):
        flow.start("h", tenant="t", region={"not": "hashable"})  # type: ignore[arg-type]


def test_step_name_checks_inlined() -> None:
    with pytest.raises(ValueError, match="step.start\\(\\): name must be a non-empty string"):
        step.start("   ")
    with pytest.raises(ValueError, match="at most 256"):
        step.start("x" * 257)
    with pytest.raises(TypeError, match="optional must be True or False"):
        step.start("s", optional=1)  # type: ignore[arg-type]


def test_waiting_events_are_nothing_for_the_garbage_collector(exported_capture: Capture) -> None:
    # Queued lifecycle events are their fields, one after the other: strings, numbers and the
    # flow's shared attribute dict. No tuple, FlowState or NamedTuple per event that Python's
    # garbage collector would count and visit while it waits for the dispatcher.
    seen: list[records.Lifecycle] = []
    events.stop()
    events.add_sink(seen.extend)
    try:
        with flow.start("gc", tenant="t"):
            with step.start("a"):
                pass
            flow.event("noted", n=1)
        fields = list(records.pending.fields)
        events.flush()
    finally:
        events.remove_sink(seen.extend)
        events.start()
    width = len(records.Lifecycle._fields)
    assert len(fields) == 5 * width
    assert fields[::width] == [
        c.EVENT_FLOW_START,
        c.EVENT_STEP_START,
        c.STEP_END,
        c.EVENT_FLOW_EVENT,
        c.FLOW_CLOSE,
    ]
    assert not any(isinstance(x, FlowState) or gc.is_tracked(x) for x in fields)
    assert len(open_flows) == 0
    # ...and the sinks get them back whole.
    assert [tuple(e) for e in seen] == [
        tuple(fields[i : i + width]) for i in range(0, len(fields), width)
    ]
    f = exported_capture.flow("gc")  # (start events of work ended by then are not sent)
    assert [e.name for e in f.events] == [c.EVENT_FLOW_EVENT]


def test_open_flows_registry_follows_the_with_block() -> None:
    scope = flow.start("registry", tenant="t")
    before = len(open_flows)
    scope.__enter__()
    assert len(open_flows) == before + 1
    scope.__exit__(None, None, None)
    assert len(open_flows) == before


# LoggerProvider takes log record limits (and the fast path exists) from opentelemetry-sdk 1.4x;
# before, the emitter always takes the public path (checked by test_otel_fallbacks.py's run).
_LIMITS = "log_record_limits" in inspect.signature(LoggerProvider).parameters
needs_log_limits = pytest.mark.skipif(not _LIMITS, reason="this OTel SDK has no log limits")


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
    # The fast path is taken only without limits (and never with the fallbacks forced).
    assert paths == [limits is None and not PUBLIC_ONLY, False]
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


@needs_log_limits
def test_fast_log_records_equal_the_sdk_path() -> None:
    fast, slow = _emit_both_ways()
    assert len(fast) == len(slow) == 1
    assert _fields(fast) == _fields(slow)


@pytest.mark.filterwarnings("ignore::opentelemetry.sdk._logs.LogRecordDroppedAttributesWarning")
@needs_log_limits
def test_log_record_limits_take_the_sdk_path() -> None:
    fast, slow = _emit_both_ways(LogRecordLimits(max_attributes=3, max_attribute_length=4))
    assert _fields(fast) == _fields(slow)
    assert len(fast[0].log_record.attributes) == 3


def test_a_signal_during_a_flush_never_splits_an_event() -> None:
    # SIGTERM (dashfrog's handler raises SystemExit) or Ctrl-C can land while a thread drains
    # the queue: whole events may be lost to the exception, but none may be cut in two, which
    # would shift every later event's fields.
    width = len(records.Lifecycle._fields)
    attrs = {c.FLOW_ID: "f" * 32, c.FLOW_NAME: "sig", c.TENANT: "t"}
    record = (c.EVENT_STEP_START, 1, 2, 3, attrs, "s", None, None, 0, None, 1, False)
    seen: list[records.Lifecycle] = []
    sinks = events._bus.sinks
    armed = False
    interrupted = 0

    def interrupt(signum: int, frame: object) -> None:
        nonlocal armed  # raise once per arming, so only inside the try below
        if armed:
            armed = False
            raise KeyboardInterrupt

    events.stop()
    previous = signal.signal(signal.SIGALRM, interrupt)
    events._bus.sinks = (seen.extend,)
    try:
        for _ in range(20):
            for _ in range(5000):
                records._append(record)
            signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
            attempt = 0
            while records.pending.fields:
                try:
                    # Every other flush runs unarmed, so on a loaded machine (where each flush
                    # outlasts the timer) some events still reach the sink to be compared.
                    attempt += 1
                    armed = attempt % 2 == 1
                    events.flush()
                    armed = False
                except KeyboardInterrupt:
                    interrupted += 1
                assert len(records.pending.fields) % width == 0
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        events._bus.sinks = sinks
        events.start()
    assert interrupted > 0  # the signals did land inside flushes
    assert seen and all(tuple(event) == record for event in seen)


def _histogram_points(many: bool, exemplar_filter: str | None = None) -> list[Any]:
    import os

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from dashfrog_sdk._otel import histograms as _histograms
    from dashfrog_sdk._otel.histograms import record_many

    values = [0.001, 0.02, 0.3, 4.0, 0.02, 70.0]
    attrs = {c.FLOW_NAME: "order", c.TENANT: "acme", c.STEP_STATUS: "completed"}
    old = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER")
    if exemplar_filter is not None:
        os.environ["OTEL_METRICS_EXEMPLAR_FILTER"] = exemplar_filter
    try:
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
    finally:
        if old is None:
            os.environ.pop("OTEL_METRICS_EXEMPLAR_FILTER", None)
        else:
            os.environ["OTEL_METRICS_EXEMPLAR_FILTER"] = old
    histogram = provider.get_meter("m").create_histogram(
        "h", explicit_bucket_boundaries_advisory=[0.005, 0.1, 1, 10]
    )
    if many:
        record_many(histogram, values, attrs)
        taken = _histograms._aggregations(histogram, attrs, 0.1)
        # The shortcut was taken (never with the fallbacks forced).
        # Never with an exemplar filter that samples, or with the fallbacks forced; an older
        # SDK (1.43) may not offer it at all (the public path then, checked equal below).
        if exemplar_filter == "always_on" or PUBLIC_ONLY:
            assert taken is None
        record_many(histogram, values[:2], {**attrs, c.TENANT: "other"})
    else:
        for value in values:
            histogram.record(value, attrs)
        for value in values[:2]:
            histogram.record(value, {**attrs, c.TENANT: "other"})
    data = reader.get_metrics_data()
    assert data is not None
    points = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    return sorted(
        (
            sorted((p.attributes or {}).items()),
            p.count,
            p.sum,
            p.min,
            p.max,
            list(p.bucket_counts),
            len(p.exemplars),
        )
        for p in points
    )


def test_histogram_shortcut_equals_the_public_path() -> None:
    # The flow metrics record a dispatcher batch's values per attribute set with
    # _otel.histograms.record_many: the same points as one public record() per value.
    assert _histogram_points(True) == _histogram_points(False)
    assert _histogram_points(True)[0][1] == 6
    # An exemplar filter that samples every value: the public path, exemplars and all.
    assert _histogram_points(True, "always_on") == _histogram_points(False, "always_on")
