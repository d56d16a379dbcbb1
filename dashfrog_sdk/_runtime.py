"""The handful of objects the hot path needs, set by `setup()` (one attribute read per call).

This module imports only `diagnostics` of the SDK: `setup` (the composition root) registers itself here
with :meth:`Runtime.register_setup` when it is imported, which the package ``__init__`` does, so
the first flow can set the SDK up from the environment without this module importing `setup`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from dashfrog_sdk import diagnostics

if TYPE_CHECKING:  # loaded by the first flow: `import dashfrog_sdk` (the CLI) loads no OTel
    from opentelemetry.trace import Tracer


class Runtime:
    __slots__ = ("_setup", "configured", "tracer")

    def __init__(self) -> None:
        self.configured = False
        # Set by setup(), or to a no-op tracer by `ensure` (every reader calls it first).
        self.tracer: Tracer = cast("Tracer", None)
        self._setup: Callable[[], object] | None = None

    def register_setup(self, setup: Callable[[], object]) -> None:
        """Name the function `ensure` runs: `setup()` with no arguments."""
        self._setup = setup

    def ensure(self) -> Runtime:
        """Run `setup()` from the environment if nothing did yet (the first flow does this).

        An explicit `setup()` raises on a bad variable; this implicit one runs inside business
        code, so it warns once and leaves the SDK off (no-op spans) instead of raising there.
        """
        if not self.configured:
            setup = self._setup
            try:
                if setup is None:
                    raise RuntimeError("dashfrog_sdk.setup was never imported")
                setup()
            except Exception as exc:
                diagnostics.report(
                    "setup.failed",
                    "dashfrog_sdk: automatic setup() failed, flows are not recorded: %s",
                    exc,
                )
                self.configured = True  # do not retry on every call; setup() can still be called
            if self.tracer is None:  # setup() failed, or declined at interpreter exit
                from opentelemetry import trace

                self.tracer = trace.NoOpTracer()
        return self


runtime = Runtime()
