"""`with_httpx()`: client spans; the flow goes only to hosts `DASHFROG_PROPAGATE_TO` allows."""

from __future__ import annotations

from typing import Any

from dashfrog_sdk.integrations._common import missing, tracer_provider
from dashfrog_sdk.propagation import set_next_destination

try:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("httpx") from exc


def _host_of(url: Any) -> str:
    if isinstance(url, tuple):  # httpx < 0.20 passed (scheme, host, port, path)
        host = url[1]
        return host.decode() if isinstance(host, bytes) else str(host)
    return str(url)


# The hooks run right before the instrumentor's inject, in the same context (the async one is
# awaited in the request's task): the propagator sends dashfrog baggage only if this host is
# allowed, and consumes the destination.
def _request_hook(span: Any, request: Any) -> None:
    set_next_destination(_host_of(request.url))


async def _async_request_hook(span: Any, request: Any) -> None:
    set_next_destination(_host_of(request.url))


_hooked = False  # instrumented by us, with the hook(s) above


def with_httpx() -> None:
    """Instrument every `httpx.Client` and `httpx.AsyncClient` of the process (idempotent)."""
    global _hooked
    instrumentor = HTTPXClientInstrumentor()
    if _hooked and instrumentor.is_instrumented_by_opentelemetry:
        return
    if instrumentor.is_instrumented_by_opentelemetry:  # by opentelemetry-instrument: no hook
        instrumentor.uninstrument()
    instrumentor.instrument(
        tracer_provider=tracer_provider(),
        request_hook=_request_hook,
        async_request_hook=_async_request_hook,
    )
    _hooked = True


def unwrap_httpx() -> None:
    """Undo `with_httpx()`."""
    global _hooked
    instrumentor = HTTPXClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _hooked = False
