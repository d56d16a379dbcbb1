"""`with_requests()`: client spans; the flow goes only to hosts `DASHFROG_PROPAGATE_TO` allows."""

from __future__ import annotations

from typing import Any

from dashfrog_sdk.integrations._common import missing, tracer_provider
from dashfrog_sdk.propagation import set_next_destination

try:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("requests") from exc


def _request_hook(span: Any, request: Any) -> None:
    # Runs right before the instrumentor's inject, in the same context: the propagator sends
    # dashfrog baggage only if this host is allowed, and consumes the destination.
    set_next_destination(str(request.url))


_hooked = False  # instrumented by us, with the hook(s) above


def with_requests() -> None:
    """Instrument every `requests` session of the process (idempotent)."""
    global _hooked
    instrumentor = RequestsInstrumentor()
    if _hooked and instrumentor.is_instrumented_by_opentelemetry:
        return
    if instrumentor.is_instrumented_by_opentelemetry:  # by opentelemetry-instrument: no hook
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=tracer_provider(), request_hook=_request_hook)
    _hooked = True


def unwrap_requests() -> None:
    """Undo `with_requests()`."""
    global _hooked
    instrumentor = RequestsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _hooked = False
