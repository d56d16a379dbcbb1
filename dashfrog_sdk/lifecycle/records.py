"""The lifecycle record: its one format, and one function per moment of a flow's life.

`flow.py` and `step.py` call :func:`flow_started`, :func:`step_started`, :func:`step_ended`,
:func:`step_progress`, :func:`step_artifact`,
:func:`flow_closed`, :func:`flow_ended` and :func:`custom_event`; only this module knows the
order of a record's fields. The dispatcher (`lifecycle.bus`) later views each record as a
:class:`Lifecycle` and hands batches to the sinks (`dashfrog_sdk.sinks`).

Hot path: each function appends the record's fields to :data:`pending` itself, in one
`deque.extend` of a tuple literal (atomic under the GIL), rather than calling a shared
`record()`: the caller pays one call per moment, as when it built the tuple itself.
`tests/flows/test_spans.py` checks what a waiting record is (its fields, nothing the garbage
collector tracks) and that the sinks get each one back whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk.context import FlowState
from dashfrog_sdk.error_text import error_attributes


class Lifecycle(NamedTuple):
    """One thing that happened to a flow, as the sinks see it.

    The calling thread queues the same fields one after the other, not this object: a waiting
    record is then no object the garbage collector counts or visits. That is also why a record
    carries the flow's attribute dict (shared, strings only) and not its `FlowState`.
    """

    kind: str  # c.EVENT_* (OTel events) or c.STEP_END / c.FLOW_CLOSE (sinks only)
    time_ns: int
    trace_id: int
    span_id: int
    flow: Mapping[str, Any]  # the flow's attributes: FlowState.attributes
    step: str | None = None  # the step's name, for step records
    attributes: Mapping[str, Any] | None = None  # record-specific extras
    status: str | None = None  # step end / flow close / flow end
    duration_ns: int = 0
    error: BaseException | str | None = None
    depth: int = 0  # nesting, for the console
    ends_flow: bool = False  # this record is the one that ends the flow (metrics count it)

    def event_attributes(self) -> dict[str, Any]:
        """The attributes of this record as an OTel event (c.OTEL_EVENTS): the flow's, then the
        step name, the record's extras, status and error. One definition for the OTel log
        record (`sinks.otel_logs`) and the store, which reads records from the bus directly
        (`store.convert.add_lifecycle`)."""
        attributes: dict[str, Any] = dict(self.flow)
        if self.step is not None:
            attributes[c.STEP_NAME] = self.step
        if self.attributes:
            attributes.update(self.attributes)
        if self.status is not None:
            attributes[c.FLOW_STATUS] = self.status
        if self.error is not None:
            attributes.update(error_attributes(self.error))
        return attributes


# A record as queued: Lifecycle's fields, in order, as a plain tuple.
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

WIDTH = len(Lifecycle._fields)
MAX_QUEUE = 100_000
MAX_FIELDS = MAX_QUEUE * WIDTH


def _never() -> bool:
    return False


class _Pending:
    """The queue of waiting records' fields (replaced in a forked child, see lifecycle.bus),
    and how a thread that finds it full waits for the dispatcher to make room (set by
    lifecycle.bus: backpressure, DASHFROG_QUEUE_FULL_WAIT)."""

    __slots__ = ("fields", "wait_for_room")

    def __init__(self) -> None:
        self.fields: deque[Any] = deque()
        self.wait_for_room: Callable[[], bool] = _never


pending = _Pending()


def _no_room() -> bool:
    """The queue is full: False once the dispatcher made room; True (the record is dropped,
    and counted) when it did not within the wait, or cannot be waited for."""
    if pending.wait_for_room():
        return False
    diagnostics.report(
        "events.dropped",
        "dashfrog_sdk: lifecycle event queue full (%d); dropping events",
        MAX_QUEUE,
    )
    return True


def _append(record: Record) -> None:
    """Queue one record (the moments off the hot path)."""
    queue = pending.fields
    if len(queue) >= MAX_FIELDS and _no_room():
        return
    queue.extend(record)


def flow_started(state: FlowState, depth: int) -> None:
    """`flow.start()` entered: the flow span started here."""
    queue = pending.fields
    if len(queue) >= MAX_FIELDS and _no_room():
        return
    queue.extend(
        (
            c.EVENT_FLOW_START,
            state.start_time_ns,
            state.trace_id,
            state.span_id,
            state.attributes,
            None,
            state.settings,
            None,
            0,
            None,
            depth,
            False,
        )
    )


def step_started(
    state: FlowState,
    name: str,
    time_ns: int,
    trace_id: int,
    span_id: int,
    depth: int,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """`step.start()` entered inside a flow (`attributes`: its attempt, for a step with
    retries, on the wire with the dashfrog.step.start event)."""
    queue = pending.fields
    if len(queue) >= MAX_FIELDS and _no_room():
        return
    queue.extend(
        (
            c.EVENT_STEP_START,
            time_ns,
            trace_id,
            span_id,
            state.attributes,
            name,
            attributes,
            None,
            0,
            None,
            depth,
            False,
        )
    )


def step_ended(
    state: FlowState,
    name: str,
    time_ns: int,
    trace_id: int,
    span_id: int,
    status: str,
    duration_ns: int,
    error: BaseException | None,
    depth: int,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """A step's block exited with `status` (for the console and the step metrics;
    `attributes`: its attempt and whether it is retried, for a step with retries)."""
    queue = pending.fields
    if len(queue) >= MAX_FIELDS and _no_room():
        return
    queue.extend(
        (
            c.STEP_END,
            time_ns,
            trace_id,
            span_id,
            state.attributes,
            name,
            attributes,
            status,
            duration_ns,
            error,
            depth,
            False,
        )
    )


def flow_closed(state: FlowState, time_ns: int, status: str, depth: int, ends_flow: bool) -> None:
    """The flow span ended where it started; `ends_flow` when that also ended the flow."""
    queue = pending.fields
    if len(queue) >= MAX_FIELDS and _no_room():
        return
    queue.extend(
        (
            c.FLOW_CLOSE,
            time_ns,
            state.trace_id,
            state.span_id,
            state.attributes,
            None,
            None,
            status,
            time_ns - state.start_time_ns,
            state.error if status == c.FAILED else None,
            depth,
            ends_flow,
        )
    )


def flow_ended(
    state: FlowState,
    status: str,
    time_ns: int,
    trace_id: int,
    span_id: int,
    error: BaseException | str | None = None,
) -> None:
    """The `dashfrog.flow.end` event: the flow's true start, end and status, wherever the flow
    span is (ARCHITECTURE.md, "Cross-process end"): `flow.end()`/`flow.fail()`, a flow with
    ``end_on_exit=False`` that ended where it started, a flow still open at exit."""
    start = state.start_time_ns
    _append(
        (
            c.EVENT_FLOW_END,
            time_ns,
            trace_id,
            span_id,
            state.attributes,
            None,
            {
                c.FLOW_START_TIME: start,
                c.FLOW_END_TIME: time_ns,
                c.FLOW_DURATION_MS: (time_ns - start) / 1e6 if start else 0.0,
                c.FLOW_TRACE_ID: format(state.trace_id, "032x"),
                c.FLOW_SPAN_ID: format(state.span_id, "016x"),
            },
            status,
            time_ns - start if start else 0,
            error if error is not None else state.error if status == c.FAILED else None,
            0,
            True,
        )
    )


def custom_event(
    state: FlowState, attributes: Mapping[str, Any], time_ns: int, trace_id: int, span_id: int
) -> None:
    """`flow.event(name, **attributes)`; `attributes` holds the name under c.EVENT_NAME_ATTR."""
    _append(
        (
            c.EVENT_FLOW_EVENT,
            time_ns,
            trace_id,
            span_id,
            state.attributes,
            None,
            attributes,
            None,
            0,
            None,
            0,
            False,
        )
    )


def step_progress(
    state: FlowState,
    name: str,
    time_ns: int,
    trace_id: int,
    span_id: int,
    attributes: Mapping[str, Any],
    depth: int,
) -> None:
    """`s.progress()` inside a flow, at most once per `progress.INTERVAL_NS` and at the step's
    end; `attributes` holds c.STEP_PROGRESS_DONE (and _TOTAL, _MESSAGE when given)."""
    _append(
        (
            c.EVENT_STEP_PROGRESS,
            time_ns,
            trace_id,
            span_id,
            state.attributes,
            name,
            attributes,
            None,
            0,
            None,
            depth,
            False,
        )
    )


def step_artifact(
    state: FlowState,
    name: str,
    time_ns: int,
    trace_id: int,
    span_id: int,
    attributes: Mapping[str, Any],
    depth: int,
) -> None:
    """`s.artifact(name, value)` inside a flow; `attributes` holds c.ARTIFACT_NAME and
    c.ARTIFACT_VALUE (the value's JSON text)."""
    _append(
        (
            c.EVENT_STEP_ARTIFACT,
            time_ns,
            trace_id,
            span_id,
            state.attributes,
            name,
            attributes,
            None,
            0,
            None,
            depth,
            False,
        )
    )
