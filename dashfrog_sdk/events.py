"""Lifecycle events in the application: `events.add_sink(callback)`.

Every flow and step start and end, every `flow.event()`, and a step's progress (at most four a
second) and artifacts reach each sink as a
:class:`LifecycleEvent` (named fields, no tuple), in the order it happened, on dashfrog's
dispatcher thread (the ``dashfrog-events`` thread, within about 0.1 s; or on the thread that
calls `dashfrog_sdk.flush()`), never on the thread running the flow: a sink costs the flow
nothing, and must not block for long.

A sink that raises never breaks the flow, the dispatcher or the other sinks: the failure is
counted (``events.sink_errors`` in `dashfrog_sdk.stats()["diagnostics"]`) and warned about
once.

Example:
    >>> from dashfrog_sdk import events
    >>> def on_event(event: events.LifecycleEvent) -> None:
    ...     if event.kind == events.STEP_END and event.status == "failed":
    ...         alert(f"{event.flow_name}/{event.step} failed: {event.error_message}")
    >>> events.add_sink(on_event)
    >>> events.remove_sink(on_event)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk.error_text import error_attributes
from dashfrog_sdk.lifecycle import bus
from dashfrog_sdk.lifecycle.records import Lifecycle

__all__ = [
    "FLOW_CLOSE",
    "FLOW_END",
    "FLOW_EVENT",
    "FLOW_START",
    "KINDS",
    "STEP_ARTIFACT",
    "STEP_END",
    "STEP_PROGRESS",
    "STEP_START",
    "LifecycleEvent",
    "Sink",
    "add_sink",
    "remove_sink",
    "sinks",
]

# The kinds of event (LifecycleEvent.kind): the wire names of conventions.py.
FLOW_START: Final = c.EVENT_FLOW_START  # a flow started in this process
STEP_START: Final = c.EVENT_STEP_START  # a step started
STEP_END: Final = c.STEP_END  # a step ended: status, duration, error
FLOW_CLOSE: Final = c.FLOW_CLOSE  # a flow's block exited here (ends_flow: and ended the flow)
FLOW_END: Final = c.EVENT_FLOW_END  # flow.end() / flow.fail(), or a flow open at exit
FLOW_EVENT: Final = c.EVENT_FLOW_EVENT  # flow.event(name, **attributes)
STEP_PROGRESS: Final = c.EVENT_STEP_PROGRESS  # s.progress(): the latest value, at most 4/s a step
STEP_ARTIFACT: Final = c.EVENT_STEP_ARTIFACT  # s.artifact(name, value)
KINDS: Final = (
    FLOW_START,
    STEP_START,
    STEP_END,
    FLOW_CLOSE,
    FLOW_END,
    FLOW_EVENT,
    STEP_PROGRESS,
    STEP_ARTIFACT,
)


@dataclass(frozen=True)
class LifecycleEvent:
    """One thing that happened to a flow in this process."""

    kind: str  # one of KINDS
    time_ns: int  # unix nanoseconds
    flow_id: str
    flow_name: str
    tenant: str
    labels: Mapping[str, str]  # the flow's labels
    parent_flow_id: str | None  # a child flow's parent
    trace_id: str  # 32 hex digits: the trace, as in any OTel backend
    span_id: str  # 16 hex digits: the flow's or the step's span
    step: str | None = None  # the step's name (STEP_START, STEP_END)
    status: str | None = None  # STEP_END, FLOW_CLOSE, FLOW_END: completed, failed, ...
    duration_ns: int = 0  # STEP_END, FLOW_CLOSE, FLOW_END
    error_type: str | None = None  # a failure's exception type, e.g. "ValueError"
    error_message: str | None = None
    exception: BaseException | None = None  # the exception itself, when there was one
    event_name: str | None = None  # FLOW_EVENT: the name given to flow.event()
    attributes: Mapping[str, Any] = field(default_factory=dict)  # FLOW_EVENT's; a step attempt's
    depth: int = 0  # nesting of the step or flow
    ends_flow: bool = False  # this event is the end of the flow

    @property
    def time(self) -> datetime:
        """`time_ns` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time_ns / 1e9, tz=timezone.utc)

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


Sink = Callable[[LifecycleEvent], None]


def _public(record: Lifecycle) -> LifecycleEvent:
    flow = record.flow
    extras = dict(record.attributes or {})
    event_name = None
    if record.kind == c.EVENT_FLOW_EVENT:
        event_name = extras.pop(c.EVENT_NAME_ATTR, None)
    error = record.error
    error_type = error_message = None
    if error is not None:
        described = error_attributes(error)
        error_type, error_message = described.get(c.ERROR_TYPE), described.get(c.ERROR_MESSAGE)
    parent = flow.get(c.FLOW_PARENT_ID)
    return LifecycleEvent(
        kind=record.kind,
        time_ns=record.time_ns,
        flow_id=str(flow.get(c.FLOW_ID, "")),
        flow_name=str(flow.get(c.FLOW_NAME, "")),
        tenant=str(flow.get(c.TENANT, "")),
        labels={k: str(v) for k, v in c.labels_of(flow).items()},
        parent_flow_id=None if parent is None else str(parent),
        trace_id=format(record.trace_id, "032x"),
        span_id=format(record.span_id, "016x"),
        step=record.step,
        status=record.status,
        duration_ns=record.duration_ns,
        error_type=error_type,
        error_message=error_message,
        exception=error if isinstance(error, BaseException) else None,
        event_name=None if event_name is None else str(event_name),
        attributes=extras,
        depth=record.depth,
        ends_flow=record.ends_flow,
    )


class _Fanout:
    """The one dispatcher sink that hands each record, made public, to the application's."""

    def __init__(self) -> None:
        self.sinks: tuple[Sink, ...] = ()

    def __call__(self, batch: Sequence[Lifecycle]) -> None:
        sinks = self.sinks
        if not sinks:
            return
        for record in batch:
            event = _public(record)
            for sink in sinks:
                try:
                    sink(event)
                except Exception as error:  # one sink's trouble is its own
                    diagnostics.report(
                        "events.sink_errors",
                        "dashfrog_sdk: lifecycle event sink %r raised %s: %s (counted in "
                        "stats(); the other sinks and the flows go on)",
                        sink,
                        type(error).__name__,
                        error,
                    )


_fanout = _Fanout()
_lock = threading.Lock()


def add_sink(sink: Sink) -> None:
    """Call `sink(event)` for every lifecycle event from now on (adding it twice: once)."""
    if not callable(sink):
        raise TypeError(
            f"events.add_sink(): sink must be a callable taking one LifecycleEvent, got {sink!r}"
        )
    with _lock:
        if sink not in _fanout.sinks:
            _fanout.sinks = (*_fanout.sinks, sink)
        bus.add_sink(_fanout)
        bus.start()


def remove_sink(sink: Sink) -> None:
    """Stop calling `sink` (a sink never added: nothing happens). Events already dispatched
    are not called back; flush first (`dashfrog_sdk.flush()`) to receive everything so far."""
    with _lock:
        _fanout.sinks = tuple(s for s in _fanout.sinks if s != sink)
        if not _fanout.sinks:
            bus.remove_sink(_fanout)


def sinks() -> tuple[Sink, ...]:
    """The sinks added, in order."""
    return _fanout.sinks
