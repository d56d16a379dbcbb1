"""What the five integrations share: the SDK's providers, install hints, incoming-baggage trust."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from dashfrog_sdk import diagnostics
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk.propagation import strip_dashfrog_members
from dashfrog_sdk.setup import installed_providers


def tracer_provider() -> TracerProvider | None:
    """Set the SDK up if nothing did (providers + DashfrogBaggagePropagator); its tracer provider.

    Instrumentors get it explicitly: `setup(tracer_provider=...)` may name one that is not global.
    """
    runtime.ensure()
    providers = installed_providers()
    return providers[0] if providers is not None else None


def missing(extra: str) -> ImportError:
    return ImportError(
        f"dashfrog_sdk.with_{extra}() needs the {extra} extra: pip install 'dashfrog-sdk[{extra}]'"
    )


def untrusted(header: str) -> str:
    """`header` without its dashfrog.* members (servers with trust_incoming=False), counted."""
    kept = strip_dashfrog_members(header)
    if kept != header:
        diagnostics.count("baggage.untrusted")
    return kept


# Set on a FastAPI/Flask app by with_fastapi/with_flask: its trust_incoming setting.
_MARK = "_dashfrog_trust_incoming"


def already_wrapped(app: Any, trust_incoming: bool, framework: str) -> bool:
    """True if `app` is wrapped with this `trust_incoming` already; ValueError if with another."""
    done = getattr(app, _MARK, None)
    if done is None:
        return False
    if done != trust_incoming:
        raise ValueError(
            f"with_{framework}(): app already wrapped with trust_incoming={done}; "
            f"call unwrap_{framework}(app) first to change it"
        )
    return True


def mark_wrapped(app: Any, trust_incoming: bool) -> None:
    setattr(app, _MARK, trust_incoming)


def unmark_wrapped(app: Any) -> bool:
    """Forget `app`'s wrapping; False if it was not wrapped."""
    if getattr(app, _MARK, None) is None:
        return False
    delattr(app, _MARK)
    return True


class ClientHooks:
    """One HTTP client instrumentor, owned with dashfrog's request hooks (requests, httpx).

    The hooks tell the propagator each request's host. A client instrumented by someone else
    (`opentelemetry-instrument`) has no hooks, so it would carry no flow: we re-instrument it.
    """

    def __init__(self, instrumentor: Any, **hooks: Any) -> None:
        self.instrumentor = instrumentor
        self.hooks = hooks
        self.hooked = False

    def wrap(self) -> None:
        instrumentor = self.instrumentor
        if self.hooked and instrumentor.is_instrumented_by_opentelemetry:
            return
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=tracer_provider(), **self.hooks)
        self.hooked = True

    def unwrap(self) -> None:
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        self.hooked = False
