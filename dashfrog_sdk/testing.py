"""Capture flows, steps and events in memory, for your own test suite.

Example (pytest; the `dashfrog_capture` fixture is registered automatically):

    def test_checkout(dashfrog_capture):
        checkout(order)
        f = dashfrog_capture.assert_flow("checkout", status="completed", steps=["charge", "ship"])
        assert f.tenant == "acme"

Or anywhere:

    with capture() as cap:
        checkout(order)
    cap.assert_flow("checkout", status="failed")
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from dashfrog_sdk import conventions as c
from dashfrog_sdk.lifecycle import bus as events
from dashfrog_sdk.setup import installed_providers, setup
from dashfrog_sdk.sinks import otel_logs
from dashfrog_sdk.status import merge

__all__ = ["Capture", "CapturedEvent", "CapturedFlow", "CapturedStep", "capture"]


@dataclass
class CapturedEvent:
    name: str
    attributes: Mapping[str, Any]
    trace_id: int
    span_id: int
    timestamp: int


@dataclass
class CapturedStep:
    name: str
    status: str | None
    optional: bool
    attributes: Mapping[str, Any]
    span: ReadableSpan
    artifacts: dict[str, Any] = field(default_factory=dict)  # s.artifact(): name -> value

    @property
    def progress(self) -> tuple[Any, Any, Any] | None:
        """The step's last ``s.progress()`` as (done, total, message), or None."""
        if c.STEP_PROGRESS_DONE not in self.attributes:
            return None
        return (
            self.attributes[c.STEP_PROGRESS_DONE],
            self.attributes.get(c.STEP_PROGRESS_TOTAL),
            self.attributes.get(c.STEP_PROGRESS_MESSAGE),
        )

    @property
    def attempt(self) -> int | None:
        """This span's attempt (1, 2, ...) for a step with retries, else None."""
        value = self.attributes.get(c.STEP_ATTEMPT)
        return value if isinstance(value, int) else None

    @property
    def error(self) -> str | None:
        """``"ValueError: message"`` for a failed step, else None."""
        err = self.attributes.get(c.ERROR_TYPE)
        return f"{err}: {self.attributes.get(c.ERROR_MESSAGE)}" if err else None


@dataclass
class CapturedFlow:
    id: str
    name: str
    tenant: str
    labels: Mapping[str, str]
    status: str | None  # flow span and end events, by dashfrog_sdk.status precedence
    parent_id: str | None
    span: ReadableSpan | None
    steps: list[CapturedStep] = field(default_factory=list)
    events: list[CapturedEvent] = field(default_factory=list)

    def attempts(self, name: str) -> list[CapturedStep]:
        """Every span of step `name`, in order: a step with retries has one per attempt."""
        return [s for s in self.steps if s.name == name]

    def step(self, name: str) -> CapturedStep:
        found = [s for s in self.steps if s.name == name]
        if len(found) != 1:
            raise AssertionError(
                f"expected one step {name!r} in flow {self.name!r}, found {len(found)}; "
                f"steps: {[s.name for s in self.steps]}"
            )
        return found[0]


class _Tap(SpanProcessor, LogRecordProcessor):
    """Added once per provider; forwards to the captures currently open."""

    def __init__(self) -> None:
        self.captures: tuple[Capture, ...] = ()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        for cap in self.captures:
            cap._add_span(span)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        name = record.event_name
        if not name:
            return
        event = CapturedEvent(
            name,
            dict(record.attributes or {}),
            record.trace_id or 0,
            record.span_id or 0,
            record.timestamp or 0,
        )
        for cap in self.captures:
            cap._add_event(event)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_taps: dict[int, _Tap] = {}
_taps_lock = threading.Lock()


def _tap_for(provider: Any, add: str) -> _Tap:
    with _taps_lock:
        tap = _taps.get(id(provider))
        if tap is None:
            tap = _taps[id(provider)] = _Tap()
            getattr(provider, add)(tap)
        return tap


class Capture:
    """What `capture()` yields: the spans and events produced while it was open."""

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []
        self._events: list[CapturedEvent] = []
        self._lock = threading.Lock()

    def _add_span(self, span: ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def _add_event(self, event: CapturedEvent) -> None:
        with self._lock:
            self._events.append(event)

    def clear(self) -> None:
        events.flush()
        with self._lock:
            self._spans.clear()
            self._events.clear()

    @property
    def spans(self) -> list[ReadableSpan]:
        """Every finished span (flows, steps and any other span)."""
        events.flush()
        with self._lock:
            return list(self._spans)

    @property
    def events(self) -> list[CapturedEvent]:
        """Every dashfrog lifecycle event (`dashfrog.flow.start`, ...), in emission order."""
        events.flush()
        with self._lock:
            return list(self._events)

    def events_named(self, name: str) -> list[CapturedEvent]:
        return [e for e in self.events if e.name == name]

    @property
    def flows(self) -> list[CapturedFlow]:
        """Flows seen, from their spans and events, in start order."""
        spans, evs = self.spans, self.events
        flows: dict[str, CapturedFlow] = {}
        for ev in evs:
            if ev.name == c.EVENT_FLOW_START:
                flows.setdefault(str(ev.attributes[c.FLOW_ID]), _flow_from(ev.attributes, None))
        for span in spans:
            attrs = span.attributes or {}
            if span.name.startswith(c.FLOW_SPAN_PREFIX) and c.FLOW_STATUS in attrs:
                flow = flows.setdefault(str(attrs[c.FLOW_ID]), _flow_from(attrs, span))
                flow.span, flow.status = span, str(attrs[c.FLOW_STATUS])
        for span in sorted(spans, key=lambda s: s.start_time or 0):
            attrs = span.attributes or {}
            flow_id = attrs.get(c.FLOW_ID)
            if span.name.startswith(c.STEP_SPAN_PREFIX) and flow_id in flows:
                flows[str(flow_id)].steps.append(
                    CapturedStep(
                        str(attrs.get(c.STEP_NAME)),
                        _str(attrs.get(c.STEP_STATUS)),
                        bool(attrs.get(c.STEP_OPTIONAL, False)),
                        dict(attrs),
                        span,
                    )
                )
        steps = {
            s.span.context.span_id: s for f in flows.values() for s in f.steps if s.span.context
        }
        for ev in evs:
            owner = flows.get(str(ev.attributes.get(c.FLOW_ID)))
            if owner is None:
                continue
            owner.events.append(ev)
            if ev.name == c.EVENT_STEP_ARTIFACT and ev.span_id in steps:
                text = str(ev.attributes.get(c.ARTIFACT_VALUE))
                steps[ev.span_id].artifacts[str(ev.attributes.get(c.ARTIFACT_NAME))] = json.loads(
                    text
                )
            if ev.name == c.EVENT_FLOW_END:
                # Several processes may end one flow: the store's precedence, not the last word.
                owner.status = merge(owner.status, _str(ev.attributes.get(c.FLOW_STATUS)))
        return list(flows.values())

    def flow(self, name: str | None = None, *, id: str | None = None) -> CapturedFlow:
        """The one flow with this name (or id); AssertionError if there are none or several."""
        found = [
            f for f in self.flows if (name is None or f.name == name) and (id is None or f.id == id)
        ]
        if len(found) != 1:
            raise AssertionError(
                f"expected one flow name={name!r} id={id!r}, found {len(found)}: "
                f"{[(f.name, f.id[:8]) for f in self.flows]}"
            )
        return found[0]

    def assert_flow(
        self,
        name: str,
        *,
        status: str | None = None,
        tenant: str | None = None,
        steps: Sequence[str] | None = None,
        labels: Mapping[str, object] | None = None,
    ) -> CapturedFlow:
        """Assert one flow `name` exists with these properties; return it for more checks."""
        flow = self.flow(name)
        if status is not None and flow.status != status:
            raise AssertionError(f"flow {name!r}: status {flow.status!r}, expected {status!r}")
        if tenant is not None and flow.tenant != tenant:
            raise AssertionError(f"flow {name!r}: tenant {flow.tenant!r}, expected {tenant!r}")
        if steps is not None and [s.name for s in flow.steps] != list(steps):
            raise AssertionError(
                f"flow {name!r}: steps {[s.name for s in flow.steps]}, expected {list(steps)}"
            )
        for key, value in (labels or {}).items():
            if flow.labels.get(key) != str(value) and not (
                isinstance(value, bool) and flow.labels.get(key) == str(value).lower()
            ):
                raise AssertionError(
                    f"flow {name!r}: label {key}={flow.labels.get(key)!r}, expected {value!r}"
                )
        return flow


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _flow_from(attrs: Mapping[str, Any], span: ReadableSpan | None) -> CapturedFlow:
    labels = {k: str(v) for k, v in c.labels_of(attrs).items()}
    return CapturedFlow(
        id=str(attrs[c.FLOW_ID]),
        name=str(attrs[c.FLOW_NAME]),
        tenant=str(attrs[c.TENANT]),
        labels=labels,
        status=_str(attrs.get(c.FLOW_STATUS)) or c.RUNNING,
        parent_id=_str(attrs.get(c.FLOW_PARENT_ID)),
        span=span,
    )


@contextmanager
def capture(*, every_start: bool = True) -> Iterator[Capture]:
    """Capture what dashfrog_sdk produces inside the block.

    Runs `setup(console=False, store=False)` if nothing configured the SDK yet, so tests write
    no files and print nothing. With `every_start=True` (the default) every
    `dashfrog.flow.start` / `dashfrog.step.start` event is captured, so a test sees the same
    events whatever the dispatcher's timing; `every_start=False` captures exactly what is
    exported, where the start event of work that ended before it was sent is left out (README,
    Data model).
    """
    if not isinstance(every_start, bool):
        raise TypeError(f"capture(): every_start must be True or False, got {every_start!r}")
    providers = installed_providers()
    if providers is None:
        setup(console=False, store=False)
        providers = installed_providers()
        assert providers is not None
    tracer_provider, logger_provider = providers
    span_tap = _tap_for(tracer_provider, "add_span_processor")
    log_tap = _tap_for(logger_provider, "add_log_record_processor")
    cap = Capture()
    events.flush()  # what happened before the block is not ours
    span_tap.captures = (*span_tap.captures, cap)
    if log_tap is not span_tap:
        log_tap.captures = (*log_tap.captures, cap)
    if every_start:
        otel_logs.every_start[0] += 1
    try:
        yield cap
    finally:
        events.flush()
        if every_start:
            otel_logs.every_start[0] -= 1
        span_tap.captures = tuple(x for x in span_tap.captures if x is not cap)
        log_tap.captures = tuple(x for x in log_tap.captures if x is not cap)


try:  # the pytest fixture, when pytest is there (registered through the pytest11 entry point)
    import pytest

    @pytest.fixture
    def dashfrog_capture() -> Iterator[Capture]:
        """Flows, steps and events produced during the test (see `capture()`)."""
        with capture() as cap:
            yield cap

except ImportError:  # pragma: no cover - pytest is optional
    pass
