"""`with_flask(app)`: server spans, and the caller's flow joined from incoming baggage."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dashfrog_sdk import outcome
from dashfrog_sdk.integrations._common import (
    already_wrapped,
    mark_wrapped,
    missing,
    tracer_provider,
    unmark_wrapped,
    untrusted,
)

try:
    from flask import Flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("flask") from exc

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def _strip_incoming(wsgi_app: WSGIApp) -> WSGIApp:
    """Outermost WSGI app: drops dashfrog.* baggage before OTel's before_request extracts it."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        header = environ.get("HTTP_BAGGAGE")
        if header:
            environ["HTTP_BAGGAGE"] = untrusted(header)
        return wsgi_app(environ, start_response)

    return app


def _report_outcome(wsgi_app: WSGIApp) -> WSGIApp:
    """Outermost WSGI app of a trusting server: a failure of the caller's flow here goes back.

    Flask calls `start_response` before its request context (and OTel's, which holds the
    caller's baggage) is popped: at that point the flow this request joined is known, and if
    it failed here, its failure is recorded for the store and told to the caller
    (dashfrog_sdk.outcome).
    """

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def start_outcome(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            header = outcome.response_header()
            outcome.settle()
            if header is not None:
                headers = [*headers, (outcome.HEADER, header)]
            return start_response(status, headers, *args)

        return wsgi_app(environ, start_outcome)

    return app


def with_flask(app: Flask, *, trust_incoming: bool = True) -> Flask:
    """Instrument `app`; with `trust_incoming=False` (public-facing) ignore callers' flows."""
    if already_wrapped(app, trust_incoming, "flask"):
        return app
    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=tracer_provider()
    )
    outer = _report_outcome if trust_incoming else _strip_incoming
    app.wsgi_app = outer(app.wsgi_app)  # type: ignore[method-assign, assignment]
    mark_wrapped(app, trust_incoming)
    return app


def unwrap_flask(app: Flask) -> None:
    """Undo `with_flask(app)` (OTel's uninstrument restores the original `wsgi_app`)."""
    if unmark_wrapped(app):
        FlaskInstrumentor.uninstrument_app(app)  # type: ignore[no-untyped-call]
