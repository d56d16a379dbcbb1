"""What the five integrations share: the SDK's providers, install hints, incoming-baggage trust."""

from __future__ import annotations

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
