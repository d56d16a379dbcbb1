"""`with_requests()`: client spans; the flow goes only to hosts `DASHFROG_PROPAGATE_TO` allows."""

from __future__ import annotations

from typing import Any

from dashfrog_sdk import outcome
from dashfrog_sdk.integrations._common import ClientHooks, missing
from dashfrog_sdk.propagation import set_next_destination

try:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("requests") from exc


def _request_hook(span: Any, request: Any) -> None:
    # Runs right before the instrumentor's inject, in the same context: the propagator sends
    # dashfrog baggage only if this host is allowed, and consumes the destination.
    set_next_destination(str(request.url))


def _response_hook(span: Any, request: Any, response: Any) -> None:
    # In the caller's context, before its client span ends: a downstream failure of the flow
    # marks it failed here (dashfrog_sdk.outcome).
    headers = getattr(response, "headers", None)
    if headers is not None:
        outcome.on_response(str(request.url), headers.get(outcome.HEADER))


_client = ClientHooks(
    RequestsInstrumentor(), request_hook=_request_hook, response_hook=_response_hook
)


def with_requests() -> None:
    """Instrument every `requests` session of the process (idempotent)."""
    _client.wrap()


def unwrap_requests() -> None:
    """Undo `with_requests()`."""
    _client.unwrap()
