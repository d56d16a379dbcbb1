"""`with_httpx()`: client spans; the flow goes only to hosts `DASHFROG_PROPAGATE_TO` allows."""

from __future__ import annotations

from typing import Any

from dashfrog_sdk import outcome
from dashfrog_sdk.integrations._common import ClientHooks, missing
from dashfrog_sdk.propagation import set_next_destination

try:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("httpx") from exc


# The hooks run right before the instrumentor's inject, in the same context (the async one is
# awaited in the request's task): the propagator sends dashfrog baggage only if this host is
# allowed, and consumes the destination.
def _request_hook(span: Any, request: Any) -> None:
    set_next_destination(str(request.url))


async def _async_request_hook(span: Any, request: Any) -> None:
    set_next_destination(str(request.url))


def _outcome_of(headers: Any) -> str | None:
    """The outcome header among `headers`: an `httpx.Headers`, or raw (name, value) pairs."""
    if hasattr(headers, "get"):
        value = headers.get(outcome.HEADER)
        return None if value is None else str(value)
    wanted = outcome.HEADER.encode()
    for name, value in headers or ():
        if (name.lower() if isinstance(name, bytes) else name.lower().encode()) == wanted:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


# In the caller's context, before its client span ends: a downstream failure of the flow marks
# it failed here (dashfrog_sdk.outcome).
def _response_hook(span: Any, request: Any, response: Any) -> None:
    outcome.on_response(str(request.url), _outcome_of(response.headers))


async def _async_response_hook(span: Any, request: Any, response: Any) -> None:
    outcome.on_response(str(request.url), _outcome_of(response.headers))


_client = ClientHooks(
    "httpx",
    HTTPXClientInstrumentor(),
    request_hook=_request_hook,
    async_request_hook=_async_request_hook,
    response_hook=_response_hook,
    async_response_hook=_async_response_hook,
)


def with_httpx() -> None:
    """Instrument every `httpx.Client` and `httpx.AsyncClient` of the process (idempotent)."""
    _client.wrap()


def unwrap_httpx() -> None:
    """Undo `with_httpx()`."""
    _client.unwrap()
