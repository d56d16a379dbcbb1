"""`with_flask(app)`: server spans, and the caller's flow joined from incoming baggage."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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


def with_flask(app: Flask, *, trust_incoming: bool = True) -> Flask:
    """Instrument `app`; with `trust_incoming=False` (public-facing) ignore callers' flows."""
    if already_wrapped(app, trust_incoming, "flask"):
        return app
    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=tracer_provider()
    )
    if not trust_incoming:
        app.wsgi_app = _strip_incoming(app.wsgi_app)  # type: ignore[method-assign, assignment]
    mark_wrapped(app, trust_incoming)
    return app


def unwrap_flask(app: Flask) -> None:
    """Undo `with_flask(app)` (OTel's uninstrument restores the original `wsgi_app`)."""
    if unmark_wrapped(app):
        FlaskInstrumentor.uninstrument_app(app)  # type: ignore[no-untyped-call]
