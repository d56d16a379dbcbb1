"""`with_fastapi(app)`: server spans, and the caller's flow joined from incoming baggage."""

from __future__ import annotations

from typing import Any

from dashfrog_sdk import outcome
from dashfrog_sdk.context import FlowState, flow_state
from dashfrog_sdk.integrations._common import (
    already_wrapped,
    mark_wrapped,
    missing,
    tracer_provider,
    unmark_wrapped,
    untrusted,
)

try:
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("fastapi") from exc


class _StripIncoming:
    """Outermost ASGI app: drops dashfrog.* baggage before OTel's middleware extracts it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = scope.get("headers")
        if headers and any(name == b"baggage" for name, _ in headers):
            scope = {**scope, "headers": _without_dashfrog(headers)}
        await self.app(scope, receive, send)


class _ReportOutcome:
    """Outermost ASGI app of a trusting server: a failure of the caller's flow here goes back.

    `send` runs in the request's context (OTel's middleware attached the caller's baggage), so
    at the response start the flow this request joined is known: if it failed here, its
    failure is recorded for the store and told to the caller (dashfrog_sdk.outcome). A
    failure after the headers went out (a streaming body, a background task) only reaches
    the store: recorded when the app returns.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        joined: list[FlowState] = []

        async def send_outcome(message: Any) -> None:
            if message.get("type") == "http.response.start":
                state = flow_state()
                if state is not None:
                    joined.append(state)
                header = outcome.response_header()
                outcome.settle()
                if header is not None:
                    headers = [*message.get("headers", ()), (_HEADER, header.encode("latin-1"))]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_outcome)
        finally:
            for state in joined:  # out of the request's context here: the state it saw
                outcome.settle(state)


_HEADER = outcome.HEADER.encode("latin-1")


def _without_dashfrog(headers: Any) -> list[tuple[bytes, bytes]]:
    """ASGI headers with the dashfrog members of each baggage header removed, nothing else.

    Latin-1 maps every byte to one character and back, so other members (UTF-8 or not) keep
    their exact bytes; a baggage header left empty goes, every other header stays as it came.
    """
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b"baggage":
            stripped = untrusted(value.decode("latin-1"))
            if not stripped and value:
                continue
            value = stripped.encode("latin-1")
        kept.append((name, value))
    return kept


def with_fastapi(
    app: FastAPI, *, trust_incoming: bool = True, record_send_receive: bool = False
) -> FastAPI:
    """Instrument `app`; with `trust_incoming=False` (public-facing) ignore callers' flows.

    The ASGI middleware's per-message "http send"/"http receive" spans are off by default, as in
    Logfire (pydantic/logfire#371): two or more spans a request that cost more than they tell.
    """
    if already_wrapped(app, trust_incoming, "fastapi"):
        return app
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider(),
        exclude_spans=None if record_send_receive else ["send", "receive"],
    )
    build = app.build_middleware_stack  # OTel's, which puts its middleware outermost
    outer = _ReportOutcome if trust_incoming else _StripIncoming
    app.build_middleware_stack = lambda: outer(build())  # type: ignore[method-assign]
    app.middleware_stack = None  # rebuilt on the next request, also if the app already served
    mark_wrapped(app, trust_incoming)
    return app


def unwrap_fastapi(app: FastAPI) -> None:
    """Undo `with_fastapi(app)` (OTel's uninstrument restores the original middleware stack)."""
    if unmark_wrapped(app):
        FastAPIInstrumentor.uninstrument_app(app)
