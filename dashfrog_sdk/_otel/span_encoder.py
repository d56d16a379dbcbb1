"""Encoding spans for OTLP with each distinct string attribute encoded once (ARCHITECTURE.md, "Hot path").

Every span of a flow carries the flow's attributes (`dashfrog.flow.id`, name, tenant, labels),
and spans of the same flow kind share most of them. The stock encoder
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`) builds two protobuf
messages per attribute of every span in Python, and hashes each span's `Resource` (a JSON
dump of its attributes) to group spans: together most of what exporting a span costs the
process. This encoder produces the same request, but:

* a string attribute is encoded once per (key, value) and kept, as the serialized bytes of a
  `Span` holding just that attribute; a span's attributes are then added in one
  `MergeFromString` of those bytes joined (protobuf merges repeated fields by appending, so
  the result is the message the stock encoder builds). Other values (numbers, booleans,
  lists) take the stock per-attribute encoding;
* spans are grouped by the identity of their resource and scope, then equal ones are merged,
  instead of hashing a resource per span.

Events, links and status use the stock helpers. The cache is bounded (emptied when full: a
miss costs one encoding). `tests/export/test_encode.py` checks that both encoders give the same
bytes for spans with every kind of field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_attributes,
    _encode_instrumentation_scope,
    _encode_key_value,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _SPAN_KIND_MAP,
    _encode_events,
    _encode_links,
    _encode_status,
    _encode_trace_state,
    _span_flags,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.trace import ReadableSpan

MAX_CACHED = 8192
_cache: dict[tuple[str, str], bytes] = {}


def _attribute_bytes(key: str, value: Any) -> bytes:
    """`key: value` as the bytes of a Span with only that attribute (cached for strings)."""
    if type(value) is str:
        cached = _cache.get((key, value))
        if cached is not None:
            return cached
        encoded: bytes = PbSpan(attributes=[_encode_key_value(key, value)]).SerializeToString()
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        _cache[(key, value)] = encoded
        return encoded
    other: bytes = PbSpan(attributes=_encode_attributes({key: value})).SerializeToString()
    return other


def _fixed_bytes(span: ReadableSpan) -> bytes:
    """Kind, flags and status, as Span bytes: the same few combinations over and over."""
    parent, status = span.parent, span.status
    key = (
        span.kind,
        parent is not None and parent.is_remote,
        status.status_code,
        status.description,
    )
    cached = _fixed.get(key)
    if cached is None:
        cached = PbSpan(
            kind=_SPAN_KIND_MAP[span.kind], status=_encode_status(status), flags=_span_flags(parent)
        ).SerializeToString()
        if len(_fixed) >= MAX_CACHED:
            _fixed.clear()
        _fixed[key] = cached
    return cached


_fixed: dict[tuple[Any, ...], bytes] = {}


def _add_span(out: Any, span: ReadableSpan) -> None:
    """Add `span` to the repeated field `out` (a ScopeSpans' spans)."""
    context: Any = span.get_span_context()  # (never None for an SDK span; as in the stock encoder)
    parent = span.parent
    pb = out.add(
        trace_id=context.trace_id.to_bytes(16, "big"),
        span_id=context.span_id.to_bytes(8, "big"),
        parent_span_id=parent.span_id.to_bytes(8, "big") if parent is not None else None,
        name=span.name,
        start_time_unix_nano=span.start_time,
        end_time_unix_nano=span.end_time,
    )
    if context.trace_state:
        pb.trace_state = _encode_trace_state(context.trace_state)
    if span.events:
        pb.events.extend(_encode_events(span.events))
    if span.links:
        pb.links.extend(_encode_links(span.links))
    if span.dropped_attributes:
        pb.dropped_attributes_count = span.dropped_attributes
    if span.dropped_events:
        pb.dropped_events_count = span.dropped_events
    if span.dropped_links:
        pb.dropped_links_count = span.dropped_links
    parts = [_fixed_bytes(span)]
    attributes: Any = span.attributes
    if attributes:
        # The SDK's BoundedAttributes is a Mapping over a dict: iterating the dict itself skips
        # the Mapping machinery (one Python call per item).
        items = getattr(attributes, "_dict", attributes).items()
        parts += [_attribute_bytes(k, v) for k, v in items]
    pb.MergeFromString(b"".join(parts))


def _find(pairs: list[tuple[Any, Any]], key: Any) -> Any:
    """The value paired with a key equal to `key`, a new empty list if none (few keys)."""
    for known, value in pairs:
        if known == key:
            return value
    value = []
    pairs.append((key, value))
    return value


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The same request as the stock `encode_spans(spans)`."""
    groups: dict[tuple[int, int], tuple[Any, Any, list[ReadableSpan]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        key = (id(resource), id(scope))
        group = groups.get(key)
        if group is None:
            group = groups[key] = (resource, scope, [])
        group[2].append(span)
    # Equal (not identical) resources and scopes are one group for the stock encoder too.
    by_resource: list[tuple[Any, list[tuple[Any, list[ReadableSpan]]]]] = []
    for resource, scope, members in groups.values():
        scopes = _find(by_resource, resource)
        known = _find(scopes, scope)
        known.extend(members)
    request = ExportTraceServiceRequest()
    for resource, scopes in by_resource:
        resource_spans = request.resource_spans.add(
            resource=_encode_resource(resource), schema_url=resource.schema_url
        )
        for scope, members in scopes:
            scope_spans = resource_spans.scope_spans.add(
                scope=_encode_instrumentation_scope(scope),
                schema_url=scope.schema_url if scope else None,
            )
            out = scope_spans.spans
            for span in members:
                _add_span(out, span)
    return request
