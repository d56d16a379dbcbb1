"""`with_httpx()`: client spans; the flow goes only to hosts `DASHFROG_PROPAGATE_TO` allows."""

from __future__ import annotations

from typing import Any

from dashfrog_sdk.integrations._common import ClientHooks, missing
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


_client = ClientHooks(
    HTTPXClientInstrumentor(),
    request_hook=_request_hook,
    async_request_hook=_async_request_hook,
)


def with_httpx() -> None:
    """Instrument every `httpx.Client` and `httpx.AsyncClient` of the process (idempotent)."""
    _client.wrap()


def unwrap_httpx() -> None:
    """Undo `with_httpx()`."""
    _client.unwrap()
