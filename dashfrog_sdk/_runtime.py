"""The handful of objects the hot path needs, set by `setup()` (one attribute read per call)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Tracer


class Runtime:
    __slots__ = ("configured", "tracer")

    def __init__(self) -> None:
        self.configured = False
        self.tracer: Tracer = trace.NoOpTracer()

    def ensure(self) -> Runtime:
        """Run `setup()` from the environment if nothing did yet (the first flow does this)."""
        if not self.configured:
            from dashfrog_sdk.setup import setup

            setup()
        return self


runtime = Runtime()
