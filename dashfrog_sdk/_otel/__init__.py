"""Every use the SDK makes of OpenTelemetry's private names, each with its public fallback.

The hot path reaches into a few OTel internals because the public way costs several times more
(ARCHITECTURE.md, "Hot path", has the measurements). Each is resolved here, once, at import;
when OTel no longer has the name (or has changed its shape), the public way is taken instead,
and the results are the same, only slower.

=====================================================  =========================================
Private name (module)                                  Public fallback
=====================================================  =========================================
``_BAGGAGE_KEY`` (opentelemetry.baggage)               ``baggage.get_all`` / ``set_baggage``:
  read and write the baggage dict in one Context copy    one Context copy per member
``_SPAN_KEY`` (opentelemetry.trace.propagation)        ``trace.set_span_in_context``:
  put the span into the same Context copy                a second copy
``_RUNTIME_CONTEXT`` (opentelemetry.context)           ``context.detach``, which logs an error
  detach quietly a token from another context            for it (a generator closed elsewhere)
``_SUPPRESS_INSTRUMENTATION_KEY`` (opentelemetry.       none needed: the exporter's own HTTP calls
  context): no spans about our own export calls          may then be traced by an instrumentation
``Span._attributes``, ``Span._end_time`` /            ``span.set_attributes`` (re-cleans each
  ``BoundedAttributes._dict`` (opentelemetry.sdk.        value): :mod:`.spans`
  trace): validated attributes in one dict update
``ReadableSpan._attributes``, ``BoundedAttributes.      the ``attributes`` mapping (a read-only
  _dict``: read an ended span's or record's              proxy per access): :mod:`.attributes`
  attributes (the store's converter)
``Logger._log_record_limits``, ``_resource``,          ``Logger.emit`` of the API record:
  ``_instrumentation_scope``, ``ReadWriteLogRecord``'s   :mod:`.log_records`
  fields (opentelemetry.sdk._logs)
``LoggerProvider._multi_log_record_processor.           build every lifecycle log record, even
  _log_record_processors``: build none when only the     when only the store (which reads the
  store wants dashfrog's events (:mod:`.log_records`)    bus) would get it
``MetricExporter._preferred_temporality`` /            the reader's defaults (cumulative, the
  ``_preferred_aggregation``: keep the OTLP exporter's   default aggregations): :mod:`.metrics`
  preferences when wrapping it
``_Histogram._measurement_consumer``, reader           ``Histogram.record`` per value:
  storages, view matches, ``_hash_attributes``,          :mod:`.histograms`
  ``Measurement``: many values of one attribute set
``MeterProvider._measurement_consumer``: fresh         none: a forked child then re-exports
  aggregations for a forked child's reader               the parent's cumulative totals
=====================================================  =========================================

Tested with opentelemetry-sdk 1.45 (constraints.txt) and the lowest version pyproject admits
(``make test-otel-lowest``). ``tests/internals/test_otel_fallbacks.py`` runs the equality checks
again with every fallback forced: set ``DASHFROG_OTEL_PUBLIC_ONLY=1`` in the environment to do
the same in an application (an escape hatch should a new OTel release change a shortcut's
meaning in a way the checks here do not notice).
"""

from __future__ import annotations

import os
from typing import Any

# Read at import, before any setup(): the names are resolved once, when modules load.
PUBLIC_ONLY = os.environ.get("DASHFROG_OTEL_PUBLIC_ONLY", "").strip().lower() in ("1", "true")


def private(module: object, name: str) -> Any:
    """`module.name`, or None when OTel has no such name or the public way is forced."""
    return None if PUBLIC_ONLY else getattr(module, name, None)
