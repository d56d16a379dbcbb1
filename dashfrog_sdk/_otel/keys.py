"""OTel's private context keys and the quiet detach (see the table in the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import baggage as _baggage
from opentelemetry import context as _context
from opentelemetry.trace import propagation as _propagation

from dashfrog_sdk._otel import private

# The OTel baggage module keeps its dict under this key. Writing the dict once, instead of one
# `set_baggage` call (one Context copy) per member, is what keeps flow.start cheap. "" when not
# available: callers take the public way.
BAGGAGE_KEY: str = private(_baggage, "_BAGGAGE_KEY") or ""
# Likewise the current span's key: one Context copy per flow/step instead of two.
SPAN_KEY: str = private(_propagation, "_SPAN_KEY") or ""
# Set while an export call runs, so that instrumented HTTP/gRPC clients make no spans of it.
SUPPRESS_INSTRUMENTATION_KEY: str | None = private(_context, "_SUPPRESS_INSTRUMENTATION_KEY")

_runtime_context = private(_context, "_RUNTIME_CONTEXT")


def _quiet_detach(token: object) -> None:
    # A token from another context (a generator closed elsewhere) cannot be reset; the
    # context it belonged to is not ours to touch, so there is nothing else to do.
    # (try/except rather than contextlib.suppress: this runs for every flow and step.)
    try:  # noqa: SIM105
        _runtime_context.detach(token)
    except Exception:
        pass


detach: Callable[[Any], None] = _quiet_detach if _runtime_context is not None else _context.detach
