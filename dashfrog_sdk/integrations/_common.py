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


# How every integration remembers that it is applied, and with which setting: one mark, set on
# what the wrapping belongs to. FastAPI and Flask wrap one app, so the mark is on the app (and
# dies with it); Celery's signal receivers and the requests/httpx instrumentors are process-wide,
# so their mark is on the integration's own module-level object (`PROCESS` for Celery, the
# `ClientHooks` instance for the clients). The value is the wrapping's setting (trust_incoming).
_MARK = "_dashfrog_applied"


class Process:
    """The target of a process-wide integration's mark (one instance per integration)."""


def already_wrapped(target: Any, setting: bool, framework: str) -> bool:
    """True if `target` is wrapped with this `setting` already; ValueError if with another."""
    done = getattr(target, _MARK, None)
    if done is None:
        return False
    if done != setting:
        raise ValueError(
            f"with_{framework}(): app already wrapped with trust_incoming={done}; "
            f"call unwrap_{framework}(app) first to change it"
        )
    return True


def mark_wrapped(target: Any, setting: bool = True) -> None:
    setattr(target, _MARK, setting)


def unmark_wrapped(target: Any) -> bool:
    """Forget `target`'s wrapping; False if it was not wrapped."""
    if getattr(target, _MARK, None) is None:
        return False
    delattr(target, _MARK)
    return True


class ClientHooks:
    """One HTTP client instrumentor, owned with dashfrog's request hooks (requests, httpx).

    The hooks tell the propagator each request's host. A client instrumented by someone else
    (`opentelemetry-instrument`) has no hooks, so it would carry no flow: we re-instrument it.
    """

    def __init__(self, framework: str, instrumentor: Any, **hooks: Any) -> None:
        self.framework = framework
        self.instrumentor = instrumentor
        self.hooks = hooks

    def wrap(self) -> None:
        instrumentor = self.instrumentor
        ours = already_wrapped(self, True, self.framework)
        if ours and instrumentor.is_instrumented_by_opentelemetry:
            return
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=tracer_provider(), **self.hooks)
        mark_wrapped(self)

    def unwrap(self) -> None:
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        unmark_wrapped(self)
