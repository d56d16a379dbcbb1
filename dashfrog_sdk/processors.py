"""The span and log processors setup() installs: flow attributes on every span, and a fan-out.

`FlowSpanProcessor` is what makes "tenant-labelled spans": any span started while a flow is
current (FastAPI server spans, HTTP client spans, Celery task spans, the user's own spans) gets
the flow's attributes, computed once per flow, in one `set_attributes` call.

The fan-outs let `setup()` be undone and redone (`shutdown()` then `setup()`) on a provider the
application owns: the SDK cannot remove a processor once added, so we add one fan-out per
provider, once, and swap what it forwards to.
"""

from __future__ import annotations

import functools
from typing import Any, Generic, TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk._otel.spans import stamp
from dashfrog_sdk.context import flow_state
from dashfrog_sdk.lifecycle import bus

P = TypeVar("P", bound=Any)


class _Children(Generic[P]):
    """Shutdown and flush of the processors a fan-out forwards to."""

    children: tuple[P, ...] = ()

    def shutdown(self) -> None:
        children, self.children = self.children, ()
        for child in children:
            child.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Flush every child even when one fails: a list, not a short-circuiting generator.
        return all([child.force_flush(timeout_millis) for child in self.children])


class FlowSpanProcessor(_Children[SpanProcessor], SpanProcessor):
    """Stamp the current flow's attributes on every span started inside it."""

    def __init__(self) -> None:
        self.children = ()
        self.enabled = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # Runs for every span of the application, inside its call to start one: the guard of
        # diagnostics as a plain try (the cheapest form).
        try:
            # Flow and step spans (our own instrumentation scope) are stamped by flow.py/step.py.
            scope = span.instrumentation_scope
            if self.enabled and (scope is None or scope.name != c.SCOPE_NAME):
                state = flow_state(parent_context)
                if state is not None:
                    stamp(span, state.attributes)
            for child in self.children:
                child.on_start(span, parent_context)
        except Exception as error:
            diagnostics.internal_error("processor.errors", error, "a span processor")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            for child in self.children:
                child.on_end(span)
        except Exception as error:
            diagnostics.internal_error("processor.errors", error, "a span processor")


class FanOutLogProcessor(_Children[LogRecordProcessor], LogRecordProcessor):
    """Forward log records to the processors of the current setup()."""

    def __init__(self) -> None:
        self.children = ()

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        try:
            for child in self.children:
                child.on_emit(log_record)
        except Exception as error:
            diagnostics.internal_error("processor.errors", error, "a log record processor")


def drain_before_flush(provider: Any) -> None:
    """Make `provider.force_flush()` and `.shutdown()` deliver dashfrog's queued events first.

    Lifecycle events wait in dashfrog's dispatcher queue (lifecycle.bus) until its thread emits
    them into the logger provider. An application that flushes its own providers (a Lambda
    handler at the end of each invocation, a test fixture, `opentelemetry-instrument`) calls
    their methods, not dashfrog's: so those methods drain the queue on the calling thread, then
    do what they did. Wrapping the provider's two methods, rather than adding a processor that
    drains, works whatever the provider's multi-processor does: processors run in order
    (a drain added last would emit after the batch processors flushed) or in parallel.
    (OTel's own atexit hook holds the unwrapped `shutdown`; dashfrog's exit hook, which runs
    before it, drains the queue.)
    """
    if getattr(provider, "_dashfrog_drains", False):
        return
    force_flush, shutdown = provider.force_flush, provider.shutdown

    def drain() -> None:
        try:
            bus.flush()
        except Exception as error:  # the application's flush goes on whatever happens here
            diagnostics.internal_error("events.flush_errors", error, "draining lifecycle events")

    @functools.wraps(force_flush)
    def flush_drained(*args: Any, **kwargs: Any) -> Any:
        drain()
        return force_flush(*args, **kwargs)

    @functools.wraps(shutdown)
    def shutdown_drained(*args: Any, **kwargs: Any) -> Any:
        drain()
        return shutdown(*args, **kwargs)

    provider.force_flush = flush_drained
    provider.shutdown = shutdown_drained
    provider._dashfrog_drains = True
