"""`step.start`: a logical operation of the current flow, as a span with lifecycle events.

Example:
    >>> with flow.start("order", tenant="acme"):
    ...     with step.start("charge", amount=42):
    ...         ...
    >>> @step.start("validate")
    ... def validate(order): ...
"""

from __future__ import annotations

import logging
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode

from dashfrog_sdk import conventions as c
from dashfrog_sdk import validation
from dashfrog_sdk._otel.keys import detach
from dashfrog_sdk._otel.spans import record_exception, stamp, stamp_one
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk.context import lookup, with_step
from dashfrog_sdk.error_text import describe, error_attributes
from dashfrog_sdk.lifecycle import records
from dashfrog_sdk.lifecycle.scope import Scope
from dashfrog_sdk.status import fail_flow, fails_the_flow, of_exit
from dashfrog_sdk.validation import MAX_NAME_LENGTH

logger = logging.getLogger("dashfrog_sdk")

__all__ = ["StepScope", "start"]


class StepScope(Scope[None]):
    """What `step.start()` returns: a context manager (sync and async) and a decorator."""

    __slots__ = (
        "_attributes",
        "_depth",
        "_name",
        "_optional",
        "_protects_flow",
        "_span",
        "_start",
        "_state",
        "_token",
    )

    def __init__(self, name: str, optional: bool, attributes: dict[str, Any]) -> None:
        # The other slots are set by _enter; a scope is never exited before it is entered.
        self._active = False
        self._name = name
        self._optional = optional
        self._attributes = attributes
        self._span: Span | None = None

    def _copy(self) -> StepScope:
        return StepScope(self._name, self._optional, self._attributes)

    def _stand_in(self) -> None:
        return None

    def _enter(self) -> None:
        rt = runtime if runtime.configured else runtime.ensure()
        parent = otel_context.get_current()
        state, depth, inside_optional = lookup(parent)
        name = self._name
        self._start = start = time_ns()
        span = rt.tracer.start_span(c.STEP_SPAN_PREFIX + name, parent, start_time=start)
        own: dict[str, Any] = {c.STEP_NAME: name}
        if self._attributes:
            own.update(self._attributes)
        if self._optional:
            own[c.STEP_OPTIONAL] = True
        if state is not None:
            stamp(span, state.attributes, own)
        else:
            logger.debug("dashfrog_sdk: step %r started outside any flow", name)
            stamp(span, own)
        optional = self._optional or inside_optional
        self._token = otel_context.attach(with_step(parent, span, name, depth, optional, state))
        self._state, self._span, self._depth = state, span, depth
        self._protects_flow = optional
        if state is not None:
            sc = span.get_span_context()
            records.step_started(state, name, start, sc.trace_id, sc.span_id, depth)

    def _exit(self, exc: BaseException | None) -> None:
        span, state = self._span, self._state
        if span is None:  # _enter raised (diagnostics reported it)
            return
        detach(self._token)
        error: BaseException | None = None
        status = of_exit(exc)
        if exc is not None and status == c.FAILED:
            error = exc
            record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, describe(exc)))
            span.set_attributes(error_attributes(exc))
            if state is not None and not self._protects_flow and fails_the_flow(exc):
                # A failed step fails its flow even when the caller catches the exception
                # (unless it, or a step around it, is optional, or the exception is a retry).
                fail_flow(state, exc)
        stamp_one(span, c.STEP_STATUS, status)
        end = time_ns()
        span.end(end)
        if state is not None:
            sc = span.get_span_context()
            records.step_ended(
                state,
                self._name,
                end,
                sc.trace_id,
                sc.span_id,
                status,
                end - self._start,
                error,
                self._depth,
            )


def start(name: str, *, optional: bool = False, **attributes: Any) -> StepScope:
    """Start a step of the current flow.

    A failed step fails its flow, even when the caller catches the exception, unless the step
    is ``optional=True``. Outside any flow the step is still a span (and logs a debug line).

    Args:
        name: the step's name, e.g. ``"charge_payment"``.
        optional: a failure of this step does not fail the flow.
        **attributes: attributes of the step span (str/int/float/bool or lists of them).
    """
    # The checks of dashfrog_sdk.validation, inlined for the common case (this runs per step);
    # anything unusual (non-ASCII too: it may hold a lone surrogate) goes through validation,
    # which raises with the full message; tests/flows/test_surrogates.py checks both paths.
    if (
        type(name) is not str
        or not 0 < len(name) <= MAX_NAME_LENGTH
        or not name.isascii()
        or name.isspace()
    ):
        name = validation.name("step.start()", "name", name)
    if optional is not False and optional is not True:
        validation.boolean("step.start()", "optional", optional)
    if attributes:
        attributes = validation.attributes("step.start()", attributes)
    return StepScope(name, optional, attributes)
