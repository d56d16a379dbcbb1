"""Lifecycle events: where they are recorded (cheaply) and where they are emitted (later).

The calling thread only adds an event's fields to a deque (:func:`record`). A background
dispatcher drains it in order, views each event as a :class:`Lifecycle`, and hands each batch to
the sinks: the OTel event emitter below (which builds the `dashfrog.flow.start` /
`dashfrog.step.start` / `dashfrog.flow.end` / `dashfrog.flow.event` log records), the console,
and the automatic flow metrics. Building log records off the calling thread is what keeps a flow
within budget (DESIGN.md, principle 4).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from typing import Any, NamedTuple

from opentelemetry._logs import Logger, LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dashfrog_sdk import _fork, diagnostics
from dashfrog_sdk import conventions as c
from dashfrog_sdk._otel import log_records as _records
from dashfrog_sdk.context import FlowState, only_span

# Internal kinds that are not OTel events, only fed to the console and metrics sinks.
STEP_END = "dashfrog.step.end"
FLOW_CLOSE = "dashfrog.flow.close"  # the flow span ended where it was started

OTEL_EVENTS = frozenset(
    {c.EVENT_FLOW_START, c.EVENT_STEP_START, c.EVENT_FLOW_END, c.EVENT_FLOW_EVENT}
)


class Lifecycle(NamedTuple):
    """One thing that happened to a flow, as the sinks see it.

    The calling thread records the same fields as a plain tuple, which :func:`record` unpacks
    into the queue: a waiting event is then no object the garbage collector counts or visits.
    That is also why an event carries the flow's attribute dict (shared, strings only) and not
    its `FlowState`.
    """

    kind: str
    time_ns: int
    trace_id: int
    span_id: int
    flow: Mapping[str, Any]  # the flow's attributes: FlowState.attributes
    step: str | None = None  # the step's name, for step events
    attributes: Mapping[str, Any] | None = None  # event-specific extras
    status: str | None = None  # step.end / flow.close / flow.end
    duration_ns: int = 0
    error: BaseException | str | None = None
    depth: int = 0  # nesting, for the console
    ends_flow: bool = False  # this record is the one that ends the flow (metrics count it)


# What the hot path appends: Lifecycle's fields, in order, as a plain tuple.
Record = tuple[
    str,
    int,
    int,
    int,
    Mapping[str, Any],
    str | None,
    Mapping[str, Any] | None,
    str | None,
    int,
    BaseException | str | None,
    int,
    bool,
]

Sink = Callable[[Sequence[Lifecycle]], None]

MAX_QUEUE = 100_000
_WIDTH = len(Lifecycle._fields)
_NEVER = object()
_MAX_FIELDS = MAX_QUEUE * _WIDTH
_INTERVAL_S = 0.1


class _Bus:
    def __init__(self) -> None:
        # Each record's fields, one after the other (see `record`).
        self.queue: deque[Any] = deque()
        self.sinks: tuple[Sink, ...] = ()
        self._lock = threading.Lock()  # serialises draining: events reach sinks in order
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="dashfrog-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(_INTERVAL_S)
            self._wake.clear()
            self.drain()

    def drain(self) -> None:
        make = Lifecycle._make
        with self._lock:
            queue = self.queue
            fields = iter(queue.popleft, _NEVER)  # (None is a field value: not a sentinel)
            while count := min(len(queue) // _WIDTH, 2048):
                # Taken in one C-level call: no Python code (so no signal handler raising
                # SystemExit or KeyboardInterrupt on this thread) can run between two pops and
                # leave a partial event at the head of the queue.
                taken = list(islice(fields, count * _WIDTH))
                batch = [make(taken[i : i + _WIDTH]) for i in range(0, len(taken), _WIDTH)]
                for sink in self.sinks:
                    try:
                        sink(batch)
                    except Exception as exc:  # a sink must never kill the dispatcher
                        diagnostics.report(
                            "events.sink_errors",
                            "dashfrog_sdk: an event sink failed (%r); events go on",
                            exc,
                        )

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        self._thread = None
        self.drain()

    def after_fork(self) -> None:
        # The parent's queue belongs to the parent: the child starts empty, with its own thread
        # and a fresh lock (the parent's may have been held by its dispatcher at fork time).
        self.queue = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        if self._thread is not None:
            self._thread = None
            self.start()


_bus = _Bus()
_fork.in_child(_bus.after_fork)


def record(event: Record) -> None:
    """Queue `event` (Lifecycle's fields as a plain tuple) for the sinks. The only bus call on
    the hot path.

    The fields go into the queue one by one (`extend`, atomic under the GIL), not as a tuple:
    then a waiting event is no object at all for the garbage collector (its fields are strings,
    numbers and the flow's shared attribute dict), and events waiting for the dispatcher neither
    trigger collections nor lengthen them.
    """
    queue = _bus.queue
    if len(queue) >= _MAX_FIELDS:
        diagnostics.report(
            "events.dropped",
            "dashfrog_sdk: lifecycle event queue full (%d); dropping events",
            MAX_QUEUE,
        )
        return
    queue.extend(event)


def record_flow_end(
    state: FlowState,
    status: str,
    end: int,
    trace_id: int,
    span_id: int,
    error: BaseException | str | None = None,
) -> None:
    """Record the `dashfrog.flow.end` event: the flow's true start, end and status, wherever the
    flow span is (DESIGN.md, cross-process end)."""
    start = state.start_time_ns
    record(
        (
            c.EVENT_FLOW_END,
            end,
            trace_id,
            span_id,
            state.attributes,
            None,
            {
                c.FLOW_START_TIME: start,
                c.FLOW_END_TIME: end,
                c.FLOW_DURATION_MS: (end - start) / 1e6 if start else 0.0,
                c.FLOW_TRACE_ID: format(state.trace_id, "032x"),
                c.FLOW_SPAN_ID: format(state.span_id, "016x"),
            },
            status,
            end - start if start else 0,
            error if error is not None else state.error if status == c.FAILED else None,
            0,
            True,
        )
    )


def add_sink(sink: Sink) -> None:
    """Register `sink` to receive every lifecycle batch (idempotent)."""
    if sink not in _bus.sinks:
        _bus.sinks = (*_bus.sinks, sink)


def remove_sink(sink: Sink) -> None:
    _bus.sinks = tuple(s for s in _bus.sinks if s is not sink)


def start() -> None:
    _bus.start()


def flush() -> None:
    """Deliver everything recorded so far to the sinks, on the calling thread."""
    _bus.drain()


def stop() -> None:
    _bus.stop()


class OtelEventEmitter:
    """Sink that turns lifecycle records into OTel log records with an event name."""

    def __init__(self, logger: Logger) -> None:
        self._emit = _records.emitter(logger)

    def __call__(self, batch: Sequence[Lifecycle]) -> None:
        emit = self._emit
        for event in batch:
            if event.kind in OTEL_EVENTS:
                try:  # one bad record must not cost the rest of the batch
                    emit(to_log_record(event))
                except Exception as exc:
                    diagnostics.report(
                        "events.emit_errors", "dashfrog_sdk: could not emit an event (%r)", exc
                    )


def to_log_record(event: Lifecycle) -> LogRecord:
    attributes: dict[str, Any] = dict(event.flow)
    if event.step is not None:
        attributes[c.STEP_NAME] = event.step
    if event.attributes:
        attributes.update(event.attributes)
    if event.status is not None:
        attributes[c.FLOW_STATUS] = event.status
    if event.error is not None:
        attributes.update(error_attributes(event.error))
    failed = event.status == c.FAILED
    return LogRecord(
        timestamp=event.time_ns,
        observed_timestamp=event.time_ns,
        context=_span_context(event.trace_id, event.span_id),
        severity_number=SeverityNumber.WARN if failed else SeverityNumber.INFO,
        severity_text="WARN" if failed else "INFO",
        body=_body(event),
        attributes=attributes,
        event_name=event.kind,
    )


def _span_context(trace_id: int, span_id: int) -> Context:
    """A context whose current span is the (already ended) span the event happened in."""
    return only_span(
        NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED))
    )


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def safe_str(value: object) -> str:
    """str(value), or a stand-in when its __str__ raises: an SDK must not replace the error."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}: str() failed>"


def describe(error: BaseException | str | None) -> str:
    """``"ValueError: message"`` for span statuses and the console."""
    if error is None:
        return "a step failed"
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {safe_str(error)}"
    return error


def error_attributes(error: BaseException | str) -> dict[str, str]:
    if isinstance(error, BaseException):
        return {c.ERROR_TYPE: type(error).__qualname__, c.ERROR_MESSAGE: safe_str(error)}
    return {c.ERROR_TYPE: "str", c.ERROR_MESSAGE: error}


def _body(event: Lifecycle) -> str:
    name = event.flow.get(c.FLOW_NAME, "?")
    if event.kind == c.EVENT_FLOW_START:
        return f"flow {name} started"
    if event.kind == c.EVENT_STEP_START:
        return f"step {event.step} of flow {name} started"
    if event.kind == c.EVENT_FLOW_END:
        return f"flow {name} ended: {event.status}"
    label = (event.attributes or {}).get(c.EVENT_NAME_ATTR, "?")
    return f"flow {name}: {label}"
