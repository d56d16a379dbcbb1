"""`with_flask(app)`: server spans, and the caller's flow joined from incoming baggage."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dashfrog_sdk.integrations._common import missing, tracer_provider, untrusted

try:
    from flask import Flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("flask") from exc

_MARK = "_dashfrog_trust_incoming"
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
    done = getattr(app, _MARK, None)
    if done is not None:
        if done != trust_incoming:
            raise ValueError(
                f"with_flask(): app already wrapped with trust_incoming={done}; "
                "call unwrap_flask(app) first to change it"
            )
        return app
    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=tracer_provider()
    )
    if not trust_incoming:
        app.wsgi_app = _strip_incoming(app.wsgi_app)  # type: ignore[method-assign, assignment]
    setattr(app, _MARK, trust_incoming)
    return app


def unwrap_flask(app: Flask) -> None:
    """Undo `with_flask(app)` (OTel's uninstrument restores the original `wsgi_app`)."""
    if getattr(app, _MARK, None) is not None:
        FlaskInstrumentor.uninstrument_app(app)  # type: ignore[no-untyped-call]
        delattr(app, _MARK)
