"""The sink that emits lifecycle records as OTel log records with an event name.

`dashfrog.flow.start`, `dashfrog.step.start`, `dashfrog.flow.end`, `dashfrog.flow.event`,
`dashfrog.step.progress` and `dashfrog.step.artifact` (c.OTEL_EVENTS); the other kinds are for the console and the metrics only. It runs on the
dispatcher thread: building log records off the calling thread is what keeps a flow within
budget (ARCHITECTURE.md, "Hot path").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from opentelemetry._logs import Logger, LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, progress
from dashfrog_sdk._otel import log_records
from dashfrog_sdk.context import only_span
from dashfrog_sdk.lifecycle.records import Lifecycle


class OtelEventEmitter:
    """Sink that turns lifecycle records into OTel log records with an event name.

    `needed`, when given, says whether anything wants the log records (asked once a batch):
    when the only consumer is the flow store, which takes the records from the bus itself
    (`store.processor.StoreEventSink`), none is built (ARCHITECTURE.md, "Hot path").
    """

    def __init__(self, logger: Logger, needed: Callable[[], bool] | None = None) -> None:
        self._emit = log_records.emitter(logger)
        self._needed = needed

    def __call__(self, batch: Sequence[Lifecycle]) -> None:
        ended = ended_in(batch)
        emit = self._emit if self._needed is None or self._needed() else None
        skipped = progress_skipped = 0
        for event in batch:
            if event.kind in c.OTEL_EVENTS:
                if event.kind in _STARTS and event.span_id in ended:
                    skipped += 1
                    continue
                # Likewise a step's progress: its span carries the last value (step.py).
                if event.kind == c.EVENT_STEP_PROGRESS and event.span_id in ended:
                    progress_skipped += 1
                    continue
                if emit is None:
                    continue
                try:  # one bad record must not cost the rest of the batch
                    emit(to_log_record(event))
                except Exception as exc:
                    diagnostics.internal_error("events.emit_errors", exc, "emitting an event")
        if skipped:
            diagnostics.count("events.starts_not_sent", skipped)
        if progress_skipped:
            diagnostics.count("events.progress_not_sent", progress_skipped)


def ended_in(batch: Sequence[Lifecycle]) -> Collection[int]:
    """The span ids of the work that ended in `batch`: their start events are not sent.

    A start event announces work that is still going on, so a running flow and its current
    step are visible before their spans end. Work that has ended by the time its start event
    would be sent (its end is in the same batch: it took less than one dispatcher interval) is
    said in full by its span, so that start event is not sent (README, Data model: most of what
    a short flow cost to export). Flow spans that ended with the flow still running
    (end_on_exit=False) keep theirs. While a test capture that asked for every event is open,
    nothing is left out: whether an end shares its start's batch depends on the dispatcher's
    timing, and a user's test must not (testing.capture). The OTel emitter and the store's
    bus sink skip the same starts.
    """
    if every_start[0]:
        return ()
    return {
        event.span_id
        for event in batch
        if event.kind == c.STEP_END or (event.kind == c.FLOW_CLOSE and event.ends_flow)
    }


_STARTS = frozenset({c.EVENT_FLOW_START, c.EVENT_STEP_START})

# How many open test captures want every start event (testing.capture(every_start=True)): a
# one-item list, so the dispatcher thread reads the current count without a lock.
every_start = [0]


def to_log_record(event: Lifecycle) -> LogRecord:
    attributes = event.event_attributes()
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


def _progress_text(event: Lifecycle) -> str:
    extra = event.attributes or {}
    return progress.text(
        event.step,
        extra.get(c.STEP_PROGRESS_DONE, 0),
        extra.get(c.STEP_PROGRESS_TOTAL),
        extra.get(c.STEP_PROGRESS_MESSAGE),
    )


def _body(event: Lifecycle) -> str:
    name = event.flow.get(c.FLOW_NAME, "?")
    if event.kind == c.EVENT_FLOW_START:
        return f"flow {name} started"
    if event.kind == c.EVENT_STEP_START:
        return f"step {event.step} of flow {name} started"
    if event.kind == c.EVENT_FLOW_END:
        return f"flow {name} ended: {event.status}"
    extra = event.attributes or {}
    if event.kind == c.EVENT_STEP_PROGRESS:
        return f"step progress: {_progress_text(event)}"
    if event.kind == c.EVENT_STEP_ARTIFACT:
        return f"artifact {extra.get(c.ARTIFACT_NAME)} of step {event.step} of flow {name}"
    label = (event.attributes or {}).get(c.EVENT_NAME_ATTR, "?")
    return f"flow {name}: {label}"
