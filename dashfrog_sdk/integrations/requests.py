"""`with_requests()`: client spans; the flow goes only to hosts `DASHFROG_PROPAGATE_TO` allows."""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate

from dashfrog_sdk import outcome
from dashfrog_sdk.integrations._common import ClientHooks, missing
from dashfrog_sdk.propagation import set_next_destination

try:
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("requests") from exc


def _request_hook(span: Any, request: Any) -> None:
    # Runs right before the instrumentor's inject, in the same context: the propagator sends
    # dashfrog baggage only if this host is allowed, and consumes the destination.
    set_next_destination(str(request.url))


def _response_hook(span: Any, request: Any, response: Any) -> None:
    # In the caller's context, before its client span ends: a downstream failure of the flow
    # marks it failed here (dashfrog_sdk.outcome). After redirects, `response` is the last
    # hop's: its own URL is the host that answered, and the one judged.
    headers = getattr(response, "headers", None)
    if headers is not None:
        url = getattr(response, "url", None) or request.url
        outcome.on_response(str(url), headers.get(outcome.HEADER))


_client = ClientHooks(
    "requests", RequestsInstrumentor(), request_hook=_request_hook, response_hook=_response_hook
)
_original_rebuild_auth = requests.Session.rebuild_auth


def _rebuild_auth(self: Any, prepared_request: Any, response: Any) -> None:
    """Judge each redirect hop on its own host, as requests judges the Authorization header.

    requests follows redirects inside the instrumented `Session.send`, which suppresses the
    instrumentation (and so its hook and inject) for the hops: the hop would leave with the
    headers of the first request, dashfrog members included. `rebuild_auth` is requests' own
    per-hop step for credentials (it runs with the new URL set), so the hop's baggage is
    re-injected here for the hop's host: withheld from a host that is not allowed.
    """
    _original_rebuild_auth(self, prepared_request, response)  # type: ignore[no-untyped-call]
    if prepared_request.headers is not None:
        set_next_destination(str(prepared_request.url))
        propagate.inject(prepared_request.headers)


def with_requests() -> None:
    """Instrument every `requests` session of the process (idempotent)."""
    _client.wrap()
    requests.Session.rebuild_auth = _rebuild_auth  # type: ignore[method-assign]


def unwrap_requests() -> None:
    """Undo `with_requests()`."""
    _client.unwrap()
    requests.Session.rebuild_auth = _original_rebuild_auth  # type: ignore[method-assign]
