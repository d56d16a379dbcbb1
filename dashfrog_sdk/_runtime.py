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
        """Run `setup()` from the environment if nothing did yet (the first flow does this).

        An explicit `setup()` raises on a bad variable; this implicit one runs inside business
        code, so it warns once and leaves the SDK off (no-op spans) instead of raising there.
        """
        if not self.configured:
            from dashfrog_sdk import diagnostics
            from dashfrog_sdk.setup import setup

            try:
                setup()
            except Exception as exc:
                diagnostics.report(
                    "setup.failed",
                    "dashfrog_sdk: automatic setup() failed, flows are not recorded: %s",
                    exc,
                )
                self.configured = True  # do not retry on every call; setup() can still be called
        return self


runtime = Runtime()
