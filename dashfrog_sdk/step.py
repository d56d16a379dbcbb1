"""`step.start`: a logical operation of the current flow, as a span with lifecycle events.

Example:
    >>> with flow.start("order", tenant="acme"):
    ...     with step.start("charge", amount=42):
    ...         ...
    >>> @step.start("validate")
    ... def validate(order): ...
    >>> @step.start("fetch_rates", retries=3, backoff=0.5, retry_on=(TimeoutError,))
    ... def fetch_rates(): ...
    >>> with step.start("enrich", raise_on_error=False):   # the flow goes on if it fails
    ...     ...
    >>> with step.start("import_rows") as s:
    ...     s.progress(400, total=1000)          # "import_rows 40% (400/1000)" while it runs
    ...     s.artifact("summary", {"rows": 1000})  # a small JSON data product of the step
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable
from time import time_ns
from types import TracebackType
from typing import Any, Literal, TypeVar, cast, overload

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
from dashfrog_sdk.lifecycle.scope import Scope, UsageError
from dashfrog_sdk.status import (
    fail_flow,
    fails_the_flow,
    of_exit,
    retries_attempt,
    step_fails_flow,
)
from dashfrog_sdk.validation import MAX_NAME_LENGTH

logger = logging.getLogger("dashfrog_sdk")

__all__ = ["IsolatedStepScope", "StepScope", "start"]

F = TypeVar("F", bound=Callable[..., Any])

MAX_BACKOFF_S = 600.0  # the longest wait between two attempts that doubling reaches


class _Options:
    """What a step was given beyond its name, `optional` and attributes: `raise_on_error=False`,
    `retries`, `timeout`. A step given none has none (``StepScope._options is None``), so the
    hot path pays one test for all of them."""

    __slots__ = ("attributes", "backoff", "raise_on_error", "retries", "retry_on", "timeout_ns")

    def __init__(
        self,
        raise_on_error: bool,
        retries: int,
        backoff: float,
        retry_on: tuple[type[BaseException], ...],
        timeout: float | None,
    ) -> None:
        self.raise_on_error = raise_on_error
        self.retries = retries
        self.backoff = backoff
        self.retry_on = retry_on
        self.timeout_ns = None if timeout is None else int(timeout * 1e9)
        attributes: dict[str, Any] = {}
        if not raise_on_error:
            attributes[c.STEP_RAISE_ON_ERROR] = False
        if retries:
            attributes[c.STEP_ATTEMPTS] = retries + 1
        if timeout is not None:
            attributes[c.STEP_TIMEOUT] = timeout
        self.attributes = attributes

    @property
    def timeout_s(self) -> float | None:
        return None if self.timeout_ns is None else self.timeout_ns / 1e9

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1, 2, ...): backoff, doubling, at
        most MAX_BACKOFF_S (or backoff itself, when larger)."""
        return min(self.backoff * 2.0 ** (attempt - 1), max(self.backoff, MAX_BACKOFF_S))


class _Deadline:
    """`asyncio.timeout(delay)` for Python 3.10, which lacks it: cancel the current task after
    `delay` seconds; turn that cancellation into a `TimeoutError` as the block exits."""

    __slots__ = ("_delay", "_fired", "_handle", "_task")

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> None:
        self._task = asyncio.current_task()
        if self._task is None:
            raise RuntimeError("a step's timeout must be used inside a task")
        self._handle = asyncio.get_running_loop().call_later(self._delay, self._fire)

    def _fire(self) -> None:
        self._fired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._fired and isinstance(exc, asyncio.CancelledError):
            uncancel = getattr(self._task, "uncancel", None)
            if uncancel is not None:
                uncancel()
            raise TimeoutError from exc


def timer_seconds(options: _Options | None) -> float:
    return 0.0 if options is None or options.timeout_s is None else options.timeout_s


def _async_timeout(delay: float) -> Any:
    """`asyncio.timeout` where it exists (3.11+), else its equivalent (:class:`_Deadline`)."""
    timeout = getattr(asyncio, "timeout", None)
    return _Deadline(delay) if timeout is None or _FORCE_DEADLINE else timeout(delay)


_FORCE_DEADLINE = False  # tests: take the Python 3.10 path on a newer Python


class StepScope(Scope["StepScope"]):
    """What `step.start()` returns: a context manager (sync and async) and a decorator.

    `with step.start("name") as s:` gives the scope itself, for :meth:`progress` and
    :meth:`artifact`.
    """

    __slots__ = (  # noqa: RUF023 - the options' slots are grouped at the end
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
        # raise_on_error=False / retries / timeout (None: none of them), the attempt (0: not
        # run by the retrying decorator), and what the exit decided (set only with options).
        "_options",
        "_attempt",
        "_retry",
        "_timer",
        "_fired",
    )

    def __init__(
        self,
        name: str,
        optional: bool,
        attributes: dict[str, Any],
        options: _Options | None = None,
        attempt: int = 0,
    ) -> None:
        # The other slots are set by _enter; a scope is never exited before it is entered.
        self._active = False
        self._name = name
        self._optional = optional
        self._attributes = attributes
        self._span: Span | None = None
        self._options = options
        self._attempt = attempt
        self._progress: tuple[Any, Any, Any] | None = None  # the latest (done, total, message)
        self._progress_sent = 0  # time_ns() of the last progress record
        self._artifacts: set[str] | None = None  # names recorded by this step

    def _copy(self, attempt: int = 0) -> StepScope:
        return type(self)(self._name, self._optional, self._attributes, self._options, attempt)

    def _stand_in(self) -> StepScope:
        return self  # progress() and artifact() still check their arguments; nothing recorded

    def _enter(self) -> StepScope:
        options = self._options
        if options is not None and options.retries and not self._attempt:
            raise UsageError(
                f"step.start({self._name!r}, retries={options.retries}): a `with` block cannot "
                "run its body again; decorate a function with @step.start(..., retries=...) "
                "instead"
            )
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
        if options is not None:
            own.update(options.attributes)
            if self._attempt:
                own[c.STEP_ATTEMPT] = self._attempt
            inside_optional = inside_optional or not options.raise_on_error
            self._retry = self._fired = False
            self._timer = None
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
            records.step_started(
                state,
                name,
                start,
                sc.trace_id,
                sc.span_id,
                depth,
                None if options is None else self._start_attributes(options),
            )
        return self

    def _exit(self, exc: BaseException | None) -> bool | None:
        span, state = self._span, self._state
        if span is None:  # _enter raised (diagnostics reported it)
            return None
        detach(self._token)
        if self._options is not None:
            return self._exit_with_options(exc)
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
        return None

    def _exit_with_options(self, exc: BaseException | None) -> bool:
        """`_exit` for a step with options (dashfrog_sdk.status: a step's timeout, error
        isolation, retries). Returns whether the exception is swallowed."""
        span, state, options = self._span, self._state, self._options
        assert span is not None and options is not None
        end = time_ns()
        error: BaseException | None = None
        status = of_exit(exc)
        if self._fired:  # an async step's timeout cancelled it
            status = c.TIMED_OUT
        elif exc is None and options.timeout_ns is not None:
            took = end - self._start
            if took > options.timeout_ns:
                status = c.TIMED_OUT
                error = TimeoutError(
                    f"step {self._name!r} took {took / 1e9:.3f} s, over its timeout of "
                    f"{options.timeout_ns / 1e9:g} s"
                )
        if exc is not None and status != c.CANCELLED:
            error = exc
            record_exception(span, exc)
        retry = self._attempt > 0 and retries_attempt(
            exc, self._attempt, options.retries, options.retry_on
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, describe(error)))
            span.set_attributes(error_attributes(error))
            if retry:
                stamp_one(span, c.STEP_RETRIED, True)
            protected = self._protects_flow or retry
            if state is not None and step_fails_flow(status, error, protected):
                fail_flow(state, error)
        self._retry = retry
        if self._progress is not None or self._artifacts is not None:
            self._finish_progress(span, state, end)  # recorded at the end, as _exit does
        stamp_one(span, c.STEP_STATUS, status)
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
                self._attempt_attributes(retry) if self._attempt else None,
            )
        # raise_on_error=False swallows a failure (or an async timeout) of the last attempt.
        return (
            exc is not None and status != c.CANCELLED and not retry and not options.raise_on_error
        )

    def _start_attributes(self, options: _Options) -> dict[str, Any]:
        """What the dashfrog.step.start event says of a step with options: its attempt and its
        options (a running step's timeout, so a viewer can say it is past it)."""
        if not self._attempt:
            return options.attributes
        return {**options.attributes, c.STEP_ATTEMPT: self._attempt}

    def _attempt_attributes(self, retried: bool = False) -> dict[str, Any]:
        assert self._options is not None
        attributes = {c.STEP_ATTEMPT: self._attempt, c.STEP_ATTEMPTS: self._options.retries + 1}
        if retried:
            attributes[c.STEP_RETRIED] = True
        return attributes

    # -- async with: a real cancellation for a step with a timeout ----------------------------
    async def __aenter__(self) -> StepScope:
        value = self.__enter__()
        options = self._options
        if options is not None and options.timeout_ns is not None and self._span is not None:
            timer = _async_timeout(options.timeout_ns / 1e9)
            try:
                await timer.__aenter__()  # RuntimeError outside a task
            except BaseException as error:
                self._leave(type(error), error, error.__traceback__)
                raise
            self._timer = timer
        return value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._async_exit(exc_type, exc, tb)

    async def _async_exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        timer = self._timer if self._options is not None and self._span is not None else None
        if timer is None:
            return self._leave(exc_type, exc, tb)
        self._timer = None
        try:
            await timer.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            self._fired = True
            seconds = timer_seconds(self._options)
            timed_out = TimeoutError(f"step {self._name!r} timed out after {seconds:g} s")
            if self._leave(TimeoutError, timed_out, tb):
                return True
            raise timed_out from exc  # exc: the cancellation the timeout caused
        return self._leave(exc_type, exc, tb)

    def _leave(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Scope.__exit__, returning whether the step swallowed the exception."""
        self._active = False
        try:
            return bool(self._exit(exc))
        except Exception as error:  # the SDK must never replace or add to the caller's exception
            diagnostics.internal_error("scope.exit_errors", error, "closing a flow or step")
            return False

    # -- decorator: retries, and the async timeout -------------------------------------------
    def __call__(self, func: F) -> F:
        options = self._options
        if options is None or not (options.retries or options.timeout_ns is not None):
            return super().__call__(func)
        self._check_decorates(func)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                attempt = 1 if options.retries else 0
                while True:
                    scope = self._copy(attempt)
                    try:
                        async with scope:
                            return await func(*args, **kwargs)
                        return None  # raise_on_error=False swallowed the error
                    except BaseException:
                        if not getattr(scope, "_retry", False):
                            raise
                    await asyncio.sleep(options.delay(attempt))
                    attempt += 1

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            attempt = 1 if options.retries else 0
            while True:
                scope = self._copy(attempt)
                try:
                    with scope:
                        return func(*args, **kwargs)
                    return None  # raise_on_error=False swallowed the error
                except BaseException:
                    if not getattr(scope, "_retry", False):
                        raise
                time.sleep(options.delay(attempt))
                attempt += 1

        return cast(F, wrapper)

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

    def _finish_progress(self, span: Span, state: Any, now: int | None = None) -> None:
        """At the step's end: its last progress on the span, and recorded if it was not yet
        (the console shows it; the OTel sink leaves it to the span). Resets the scope, so a
        scope entered again starts with no progress and no artifacts."""
        with _watched_lock:  # not while the dispatcher samples it: each value recorded once
            _watched.discard(self)
            value = self._progress
            if value is not None:
                stamp(span, self._progress_attributes(value))
                if state is not None and value is not getattr(self, "_progress_recorded", None):
                    self._record_progress(value, time_ns() if now is None else now)
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


class IsolatedStepScope(StepScope):
    """What `step.start(..., raise_on_error=False)` returns: a step whose failure is recorded
    and swallowed (its `with` block's exit may suppress the exception, as type checkers then
    know; a decorated function whose step swallowed an error returns None)."""

    __slots__ = ()

    def __exit__(  # type: ignore[override]
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._leave(exc_type, exc, tb)

    async def __aexit__(  # type: ignore[override]
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return await self._async_exit(exc_type, exc, tb)


_ANY_EXCEPTION: tuple[type[BaseException], ...] = (Exception,)


@overload
def start(
    name: str,
    *,
    optional: bool = ...,
    raise_on_error: Literal[True] = ...,
    retries: int = ...,
    backoff: float = ...,
    retry_on: type[Exception] | tuple[type[Exception], ...] | None = ...,
    timeout: float | None = ...,
    **attributes: Any,
) -> StepScope: ...


@overload
def start(
    name: str,
    *,
    optional: bool = ...,
    raise_on_error: bool,
    retries: int = ...,
    backoff: float = ...,
    retry_on: type[Exception] | tuple[type[Exception], ...] | None = ...,
    timeout: float | None = ...,
    **attributes: Any,
) -> IsolatedStepScope: ...


def start(
    name: str,
    *,
    optional: bool = False,
    raise_on_error: bool = True,
    retries: int = 0,
    backoff: float = 0.0,
    retry_on: type[Exception] | tuple[type[Exception], ...] | None = None,
    timeout: float | None = None,
    **attributes: Any,
) -> StepScope:
    """Start a step of the current flow.

    A failed step fails its flow, even when the caller catches the exception, unless the step
    is ``optional=True`` or ``raise_on_error=False``. Outside any flow the step is still a span
    (and logs a debug line). The rules: dashfrog_sdk.status.

    Args:
        name: the step's name, e.g. ``"charge_payment"``.
        optional: a failure of this step does not fail the flow (the exception propagates).
        raise_on_error: ``False``: a failure (or timeout) is recorded and the exception is
            swallowed; the flow goes on, not failed. With ``optional=True`` too: swallowed.
        retries: run a decorated function again up to this many times when it raises one of
            `retry_on`; each attempt is its own step span (``dashfrog.step.attempt``), the last
            decides. Decorator form only: a ``with`` block given retries raises `TypeError`.
        backoff: seconds to wait before the second attempt, doubling for each one after.
        retry_on: the exception types to retry (default: any ``Exception``).
        timeout: seconds. Async steps are cancelled then (``TimeoutError``); a sync step that
            returns after it is recorded ``timed_out``. Either fails the flow like a failure.
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
    if (
        raise_on_error is not True
        or retries
        or backoff
        or retry_on is not None
        or timeout is not None
    ):
        return _with_options(
            name, optional, attributes, raise_on_error, retries, backoff, retry_on, timeout
        )
    return StepScope(name, optional, attributes)


def _with_options(
    name: str,
    optional: bool,
    attributes: dict[str, Any],
    raise_on_error: object,
    retries: object,
    backoff: object,
    retry_on: object,
    timeout: object,
) -> StepScope:
    where = "step.start()"
    isolate = not validation.boolean(where, "raise_on_error", raise_on_error)
    count = validation.retries(where, retries)
    delay = validation.backoff(where, backoff)
    types = _ANY_EXCEPTION
    if retry_on is not None:
        types = validation.exception_types(where, "retry_on", retry_on)
    if not count and (delay or retry_on is not None):
        given = "backoff" if delay else "retry_on"
        raise ValueError(f"{where}: {given} is given without retries; add retries=N (N >= 1)")
    seconds = validation.timeout(where, timeout)
    options = _Options(not isolate, count, delay, types, seconds)
    kind = IsolatedStepScope if isolate else StepScope
    return kind(name, optional, attributes, options)
