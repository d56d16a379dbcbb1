"""`step.start`: a logical operation of the current flow, as a span with lifecycle events.

Example:
    >>> with flow.start("order", tenant="acme"):
    ...     with step.start("charge", amount=42):
    ...         ...
    >>> @step.start("validate")
    ... def validate(order): ...
    >>> with step.start("import_rows") as s:
    ...     s.progress(400, total=1000)          # "import_rows 40% (400/1000)" while it runs
    ...     s.artifact("summary", {"rows": 1000})  # a small JSON data product of the step
"""

from __future__ import annotations

import logging
import threading
import weakref
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode

from dashfrog_sdk import _fork, diagnostics, validation
from dashfrog_sdk import conventions as c
from dashfrog_sdk import progress as _progress
from dashfrog_sdk._otel.keys import detach
from dashfrog_sdk._otel.spans import record_exception, stamp, stamp_one
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk.context import lookup, with_step
from dashfrog_sdk.error_text import describe, error_attributes
from dashfrog_sdk.lifecycle import bus, records
from dashfrog_sdk.lifecycle.scope import Scope
from dashfrog_sdk.status import fail_flow, fails_the_flow, of_exit
from dashfrog_sdk.validation import MAX_NAME_LENGTH

logger = logging.getLogger("dashfrog_sdk")

__all__ = ["StepScope", "start"]


class StepScope(Scope["StepScope"]):
    """What `step.start()` returns: a context manager (sync and async) and a decorator.

    `with step.start("name") as s:` gives the scope itself, for :meth:`progress` and
    :meth:`artifact`.
    """

    __slots__ = (
        "__weakref__",  # the dispatcher watches running steps weakly (step._watched)
        "_artifacts",
        "_attributes",
        "_depth",
        "_name",
        "_optional",
        "_progress",
        "_progress_recorded",
        "_progress_sent",
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
        self._progress: tuple[Any, Any, Any] | None = None  # the latest (done, total, message)
        self._progress_sent = 0  # time_ns() of the last progress record
        self._artifacts: set[str] | None = None  # names recorded by this step

    def _copy(self) -> StepScope:
        return StepScope(self._name, self._optional, self._attributes)

    def _stand_in(self) -> StepScope:
        return self  # progress() and artifact() still check their arguments; nothing recorded

    def _enter(self) -> StepScope:
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
        return self

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
        if self._progress is not None or self._artifacts is not None:
            self._finish_progress(span, state)
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

    # -- progress and artifacts ------------------------------------------------------------
    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Say how far the step is: ``s.progress(400, total=1000)`` reads "import_rows 40%
        (400/1000)" in the console, the CLI, the store and the UI while the step runs.

        Cheap in a tight loop: a call only checks its arguments and keeps the value on the step;
        the lifecycle dispatcher records the latest value at most every 250 ms
        (``progress.INTERVAL_NS``), and the step's end puts the last one on its span. ``done`` and
        ``total`` are numbers >= 0 (``total`` > 0, ``done <= total``; ``total=None`` when it is
        not known), ``message`` a short string (at most 256 characters); anything else raises
        at once.
        """
        # The checks of dashfrog_sdk.progress.check, inlined for the common case (an int count,
        # an int total or none, a plain message or none: this runs per loop iteration);
        # anything else goes through check(), which raises with the full message or returns
        # the same values (tests/flows/test_progress.py checks both paths record the same).
        if not (
            type(done) is int
            and done >= 0
            and (total is None or (type(total) is int and total > 0 and done <= total))
            and (
                message is None
                or (
                    type(message) is str
                    and 0 < len(message) <= _progress.MAX_MESSAGE_LENGTH
                    and message.isascii()  # else check(): it refuses lone surrogates
                )
            )
        ):
            done, total, message = _progress.check("progress()", done, total, message)
        if not self._active:
            raise RuntimeError(
                "progress() was called on a step that is not running: call it inside "
                '`with step.start("name") as s:`'
            )
        if self._progress is None:
            self._watch()  # the first call: the dispatcher samples this step from now on
        self._progress = (done, total, message)

    def artifact(self, name: str, value: Any) -> None:
        """Record a small JSON data product of the step: ``s.artifact("summary", {"rows": 3})``.

        Stored with the step (the flow store, ClickHouse), shown in ``dashfrog flow``, its
        ``--json`` and Markdown, and the UI's flow page; never put in baggage or headers.
        ``value`` must be JSON-serialisable and at most 64 KiB as compact JSON; ``name`` a key
        (letters, digits, ``_ - .``); at most 32 names per step; a name given again replaces
        its value. Anything else raises at once.
        """
        where = "artifact()"
        name, text = _progress.encode_artifact(where, name, value)
        if not self._active:
            raise RuntimeError(
                "artifact() was called on a step that is not running: call it inside "
                '`with step.start("name") as s:`'
            )
        names = self._artifacts
        if names is None:
            names = self._artifacts = set()
        if name not in names and len(names) >= _progress.MAX_ARTIFACTS:
            raise ValueError(
                f"{where}: a step holds at most {_progress.MAX_ARTIFACTS} artifacts; "
                f"{name!r} would be one more: gather them into one value"
            )
        names.add(name)
        state, span = self._state_and_span()
        if state is None or span is None:
            return
        try:  # the arguments were right: nothing from here on raises into the application
            sc = span.get_span_context()
            records.step_artifact(
                state,
                self._name,
                time_ns(),
                sc.trace_id,
                sc.span_id,
                {c.ARTIFACT_NAME: name, c.ARTIFACT_VALUE: text},
                self._depth,
            )
        except Exception as error:
            diagnostics.internal_error("step.artifact_errors", error, "recording an artifact")

    def _state_and_span(self) -> tuple[Any, Span | None]:
        # Both are set by _enter; a stand-in scope (the SDK failed to start it) has neither.
        return getattr(self, "_state", None), self._span

    def _watch(self) -> None:
        state, span = self._state_and_span()
        if state is not None and span is not None:  # in a flow: progress records
            try:
                with _watched_lock:
                    _watched.add(self)
            except Exception as error:  # never into the application
                diagnostics.internal_error("step.progress_errors", error, "watching progress")

    @staticmethod
    def _progress_attributes(value: tuple[Any, Any, Any]) -> dict[str, Any]:
        done, total, message = value
        attributes: dict[str, Any] = {c.STEP_PROGRESS_DONE: done}
        if total is not None:
            attributes[c.STEP_PROGRESS_TOTAL] = total
        if message is not None:
            attributes[c.STEP_PROGRESS_MESSAGE] = message
        return attributes

    def _record_progress(self, value: tuple[Any, Any, Any], now: int) -> None:
        """Queue a progress record of `value` (a step in a flow; under _watched_lock)."""
        self._progress_recorded: tuple[Any, Any, Any] | None = value
        span, state = self._span, self._state
        assert span is not None and state is not None  # only such steps are watched
        sc = span.get_span_context()
        records.step_progress(
            state,
            self._name,
            now,
            sc.trace_id,
            sc.span_id,
            self._progress_attributes(value),
            self._depth,
        )

    def _finish_progress(self, span: Span, state: Any) -> None:
        """At the step's end: its last progress on the span, and recorded if it was not yet
        (the console shows it; the OTel sink leaves it to the span). Resets the scope, so a
        scope entered again starts with no progress and no artifacts."""
        with _watched_lock:  # not while the dispatcher samples it: each value recorded once
            _watched.discard(self)
            value = self._progress
            if value is not None:
                stamp(span, self._progress_attributes(value))
                if state is not None and value is not getattr(self, "_progress_recorded", None):
                    self._record_progress(value, time_ns())
            self._progress = self._progress_recorded = self._artifacts = None
            self._progress_sent = 0


# Running steps in a flow that said how far they are: the dispatcher samples them.
# Weak: a step never exited (its generator dropped) is forgotten with it.
_watched: weakref.WeakSet[StepScope] = weakref.WeakSet()
_watched_lock = threading.Lock()


def sample_progress() -> None:
    """Record each watched step's latest progress, if it changed, at most once per
    `progress.INTERVAL_NS` a step. Runs on the lifecycle dispatcher before each drain (every
    100 ms, and on flush), so `s.progress()` itself never reads the clock or builds a record."""
    if not _watched:
        return
    # Not waiting: the lock may be held by this very thread (a SIGTERM handler flushing while
    # the interrupted code was ending a step); a sample skipped is only a sample later.
    if not _watched_lock.acquire(blocking=False):
        return
    try:
        now = time_ns()
        for scope in list(_watched):
            value = scope._progress
            if value is None or value is getattr(scope, "_progress_recorded", None):
                continue
            if 0 <= now - scope._progress_sent < _progress.INTERVAL_NS:
                continue
            scope._progress_sent = now
            scope._record_progress(value, now)
    finally:
        _watched_lock.release()


def _after_fork() -> None:
    global _watched_lock
    _watched_lock = threading.Lock()


bus.add_sampler(sample_progress)
_fork.in_child(_after_fork)


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
    # anything unusual goes through validation, which raises with the full message.
    if type(name) is not str or not 0 < len(name) <= MAX_NAME_LENGTH or name.isspace():
        name = validation.name("step.start()", "name", name)
    if optional is not False and optional is not True:
        validation.boolean("step.start()", "optional", optional)
    if attributes:
        attributes = validation.attributes("step.start()", attributes)
    return StepScope(name, optional, attributes)
