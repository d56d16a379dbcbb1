"""dashfrog's OTLP span encoder (_otel/span_encoder.py) gives the stock encoder's request."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from dashfrog_sdk import conventions as c
from dashfrog_sdk._otel import span_encoder as encode
from dashfrog_sdk._otel.span_encoder import encode_spans


def _provider(
    resource: Resource, limits: SpanLimits | None = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _spans() -> Sequence[ReadableSpan]:
    first, spans_a = _provider(Resource.create({"service.name": "a", "n": 1}))
    # An equal resource in another object: one ResourceSpans for both encoders.
    again, spans_b = _provider(Resource.create({"service.name": "a", "n": 1}))
    other, spans_c = _provider(
        Resource.create({"service.name": "ü ✓"}), SpanLimits(max_attributes=3)
    )
    flow = {c.FLOW_ID: "f" * 32, c.FLOW_NAME: "order", c.TENANT: "acme", "dashfrog.label.k": "v"}
    remote = SpanContext(
        0x1234,
        0x5678,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("k", "v")]),
    )
    tracer = first.get_tracer("dashfrog_sdk", "1.0")
    with tracer.start_as_current_span("flow order", attributes=flow) as f:
        for name in ("a", "b"):
            with tracer.start_as_current_span(
                f"step {name}", attributes={**flow, c.STEP_NAME: name}
            ):
                pass
        f.set_attribute(c.FLOW_STATUS, "completed")
    with tracer.start_as_current_span(
        "odd", context=set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.SERVER
    ) as s:
        s.set_attributes({"i": 3, "x": 1.5, "b": True, "l": ["a", "b"], "n": [1, 2], "e": ""})
        s.add_event("evt", {"k": "v", "n": 2})
        s.set_status(Status(StatusCode.ERROR, "boom"))
    with first.get_tracer("app").start_as_current_span(
        "linked", links=[Link(remote, {"why": "because"})], kind=SpanKind.CLIENT
    ):
        pass
    with first.get_tracer("app").start_as_current_span("bare"):
        pass
    with again.get_tracer("app").start_as_current_span("again", attributes=flow):
        pass
    with other.get_tracer("x", schema_url="https://s").start_as_current_span(
        "limited", attributes={"a": "1", "b": "2", "c": "3", "d": "4"}
    ):
        pass
    return [
        *spans_a.get_finished_spans(),
        *spans_b.get_finished_spans(),
        *spans_c.get_finished_spans(),
    ]


@pytest.mark.parametrize("max_cached", [encode.MAX_CACHED, 2])
def test_same_request_as_the_stock_encoder(
    max_cached: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encode, "MAX_CACHED", max_cached)  # also: a cache emptied when full
    spans = _spans()
    assert any(s.dropped_attributes for s in spans)
    for _ in range(2):  # cold, then from the cache
        ours, theirs = encode_spans(spans), stock(spans)
        assert ours == theirs
        assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
            deterministic=True
        )
    assert len(ours.resource_spans) == 2


def test_the_grpc_exporter_uses_it() -> None:
    from dashfrog_sdk.config import SignalExport
    from dashfrog_sdk.exporting.otlp import make_exporter

    exporter = make_exporter("traces", SignalExport("http://127.0.0.1:1", "grpc", 1.0, 10, 10, 1.0))
    spans = _spans()
    assert exporter._translate_data(spans) == stock(spans)
    exporter.shutdown()
