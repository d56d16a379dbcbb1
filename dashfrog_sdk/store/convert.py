"""Turn exported OTel spans and log records into store rows.

Pure functions, no I/O: the exporters call them on the batch processors' threads. Records that
carry no flow id are not dashfrog's and are skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dashfrog_sdk import conventions as c
from dashfrog_sdk._otel.attributes import plain, span_attributes
from dashfrog_sdk.validation import received_timeout

if TYPE_CHECKING:  # the readers of a store (the CLI) load none of OpenTelemetry
    from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
    from opentelemetry.sdk.trace import ReadableSpan

    from dashfrog_sdk.lifecycle.records import Lifecycle

SERVICE_NAME = "service.name"

# Attributes the store keeps in dedicated columns; everything else that starts with the
# dashfrog prefix is plumbing and is not repeated in a step's or event's "attributes".
_PLUMBING = c.PREFIX


@dataclass
class FlowRow:
    flow_id: str
    name: str | None = None
    tenant: str | None = None
    parent_id: str | None = None
    status: str | None = None  # None: no news about the end
    start_ns: int | None = None
    end_ns: int | None = None
    timeout_s: float | None = None
    end_on_exit: bool | None = None
    trace_id: str | None = None
    span_id: str | None = None
    service: str | None = None  # only from what started the flow (its span or start event)
    error_type: str | None = None
    error_message: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRow:
    span_id: str
    flow_id: str
    name: str
    status: str = c.RUNNING
    trace_id: str | None = None
    parent_span_id: str | None = None
    service: str | None = None
    optional: bool = False
    start_ns: int | None = None
    end_ns: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # The step's last progress, from its span (progress_ns: the span's end).
    progress_done: float | None = None
    progress_total: float | None = None
    progress_message: str | None = None
    progress_ns: int | None = None


@dataclass
class ProgressRow:
    """A dashfrog.step.progress event: the running step's latest progress."""

    span_id: str
    flow_id: str
    ts_ns: int
    done: float
    total: float | None
    message: str | None


@dataclass
class ArtifactRow:
    """A dashfrog.step.artifact event: one named JSON value of a step."""

    span_id: str
    flow_id: str
    name: str
    ts_ns: int
    value: str  # the JSON text, as recorded
    step_name: str | None
    service: str | None


@dataclass
class SpanRow:
    span_id: str
    flow_id: str
    name: str
    trace_id: str | None
    parent_span_id: str | None
    kind: str | None
    service: str | None
    start_ns: int | None
    end_ns: int | None
    error: bool


@dataclass
class EventRow:
    flow_id: str
    name: str
    ts_ns: int | None
    service: str | None
    trace_id: str | None
    span_id: str | None
    step_name: str | None
    attributes: dict[str, Any]


@dataclass
class LogRow:
    flow_id: str
    ts_ns: int | None
    severity: str | None
    body: str | None
    logger: str | None
    step_name: str | None
    service: str | None
    trace_id: str | None
    span_id: str | None
    attributes: dict[str, Any]


@dataclass
class Batch:
    flows: list[FlowRow] = field(default_factory=list)
    steps: list[StepRow] = field(default_factory=list)
    spans: list[SpanRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    logs: list[LogRow] = field(default_factory=list)
    progress: list[ProgressRow] = field(default_factory=list)
    artifacts: list[ArtifactRow] = field(default_factory=list)
    # Flows whose identity (name, tenant, parent, labels) a row of this batch already carries:
    # every record of a flow carries the same, so later rows need not decode it again.
    known: set[str] = field(default_factory=set)
    # The last flow row appended per flow (see `_flow_seen`).
    last: dict[str, FlowRow] = field(default_factory=dict)
    # The last resource read and its service.name: a batch's spans share one or two resources
    # (their provider's), whose attributes mapping is Python code on every read.
    resource: Any = None
    service: str | None = None

    def __len__(self) -> int:
        return (
            len(self.flows)
            + len(self.steps)
            + len(self.spans)
            + len(self.events)
            + len(self.logs)
            + len(self.progress)
            + len(self.artifacts)
        )

    def drop_flows(self, flow_ids: Mapping[str, object] | set[str]) -> None:
        """Remove every row of these flows (flows the store queue dropped whole)."""
        self.flows = [r for r in self.flows if r.flow_id not in flow_ids]
        self.steps = [r for r in self.steps if r.flow_id not in flow_ids]
        self.spans = [r for r in self.spans if r.flow_id not in flow_ids]
        self.events = [r for r in self.events if r.flow_id not in flow_ids]
        self.logs = [r for r in self.logs if r.flow_id not in flow_ids]
        self.progress = [r for r in self.progress if r.flow_id not in flow_ids]
        self.artifacts = [r for r in self.artifacts if r.flow_id not in flow_ids]
        self.known.difference_update(flow_ids)
        for flow_id in flow_ids:
            self.last.pop(flow_id, None)


# -- helpers ----------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """An attribute value as something ``json.dumps`` accepts."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    return str(value)


def user_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes a user gave (everything outside the ``dashfrog.`` namespace)."""
    return {k: jsonable(v) for k, v in attrs.items() if not k.startswith(_PLUMBING)}


# A step's options, kept with its attributes (store.model.step_options reads them back).
_STEP_OPTIONS = (
    c.STEP_ATTEMPT,
    c.STEP_ATTEMPTS,
    c.STEP_RETRIED,
    c.STEP_TIMEOUT,
    c.STEP_RAISE_ON_ERROR,
)


def step_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A step's stored attributes: the user's, and its options (attempt, timeout...)."""
    stored = user_attributes(attrs)
    for key in _STEP_OPTIONS:
        if key in attrs:
            stored[key] = jsonable(attrs[key])
    return stored


def stored_labels(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The flow's labels by label key, as JSON values (conventions.labels_of, made storable)."""
    return {k: jsonable(v) for k, v in c.labels_of(attrs).items()}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    """A progress number as recorded (a number, or its text from another exporter)."""
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _trace_hex(value: int | None) -> str | None:
    return format(value, "032x") if value else None  # opentelemetry.trace.format_trace_id


def _span_hex(value: int | None) -> str | None:
    return format(value, "016x") if value else None  # opentelemetry.trace.format_span_id


def _flow_identity(batch: Batch, flow_id: str, attrs: Mapping[str, Any]) -> FlowRow:
    """The flow's identity from a record's attributes; decoded once per flow and batch (every
    record of a flow in one process carries the flow's whole attribute dict; one that lacks
    the name is not trusted to, and does not count)."""
    if flow_id in batch.known:
        return FlowRow(flow_id=flow_id)
    row = FlowRow(
        flow_id=flow_id,
        name=_str(attrs.get(c.FLOW_NAME)),
        tenant=_str(attrs.get(c.TENANT)),
        parent_id=_str(attrs.get(c.FLOW_PARENT_ID)),
        labels=stored_labels(attrs),
    )
    if row.name is not None and row.tenant is not None:
        batch.known.add(flow_id)
    return row


def _append_flow(batch: Batch, row: FlowRow) -> None:
    batch.flows.append(row)
    batch.last[row.flow_id] = row


def _flow_seen(batch: Batch, flow_id: str, attrs: Mapping[str, Any], start: int | None) -> None:
    """A record that only says "this flow exists, and had started by `start`" (a step's or
    another span, a log record).

    Shortcut: for a flow this batch already has the identity of, no row is appended; its
    start is taken into the flow's last row instead. That is what the writer's coalescing
    (writer._coalesce_flows) does with such a row, which never has a status and never comes
    first: it folds into the flow's last kept row, where only the earlier start counts, and
    the last row appended ends up in that same kept row. It saves three rows (and their
    garbage-collected objects) a flow. tests/store/test_load.py
    (test_coalesced_writes_equal_row_by_row_writes, test_records_in_any_order_...) checks the
    store equals one upsert per record.
    """
    prev = batch.last.get(flow_id) if flow_id in batch.known else None
    if prev is None:
        row = _flow_identity(batch, flow_id, attrs)
        row.start_ns = start
        _append_flow(batch, row)
    elif start is not None and (prev.start_ns is None or start < prev.start_ns):
        prev.start_ns = start


def _service(resource_attrs: Mapping[str, Any]) -> str | None:
    return _str(resource_attrs.get(SERVICE_NAME))


# -- spans --------------------------------------------------------------------------------------


def _span_error(span: ReadableSpan, attrs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    etype, emsg = _str(attrs.get(c.ERROR_TYPE)), _str(attrs.get(c.ERROR_MESSAGE))
    # `span.events` copies the span's event list under its lock: look at it only when it is
    # not empty (ReadableSpan keeps it as `_events`; the public property is the fallback).
    if etype is None and getattr(span, "_events", True):
        for event in span.events:
            if event.name == "exception" and event.attributes:
                etype = _str(event.attributes.get("exception.type"))
                emsg = emsg or _str(event.attributes.get("exception.message"))
                break
    return etype, emsg


def add_span(batch: Batch, span: ReadableSpan) -> None:
    attrs = span_attributes(span)  # the dict itself, not a proxy per access (see _otel)
    flow_id = _str(attrs.get(c.FLOW_ID))
    ctx = span.context
    if not flow_id or ctx is None:
        return
    span_id = format(ctx.span_id, "016x")
    trace_id = format(ctx.trace_id, "032x")
    parent = _span_hex(span.parent.span_id) if span.parent else None
    resource = span.resource
    if resource is batch.resource:
        service = batch.service
    else:
        service = batch.service = _service(resource.attributes)
        batch.resource = resource
    failed = not span.status.is_ok  # StatusCode.ERROR: neither UNSET nor OK
    step_name = attrs.get(c.STEP_NAME)
    flow_name = attrs.get(c.FLOW_NAME)
    name = span.name

    if step_name is not None and name.startswith(c.STEP_SPAN_PREFIX):
        _flow_seen(batch, flow_id, attrs, span.start_time)
        etype, emsg = _span_error(span, attrs)
        status = _str(attrs.get(c.STEP_STATUS)) or (c.FAILED if failed else c.COMPLETED)
        done = _number(attrs.get(c.STEP_PROGRESS_DONE))
        batch.steps.append(
            StepRow(
                span_id=span_id,
                flow_id=flow_id,
                name=str(step_name),
                status=status,
                trace_id=trace_id,
                parent_span_id=parent,
                service=service,
                optional=bool(attrs.get(c.STEP_OPTIONAL, False)),
                start_ns=span.start_time,
                end_ns=span.end_time,
                error_type=etype,
                error_message=emsg,
                attributes=step_attributes(attrs),
                progress_done=done,
                progress_total=_number(attrs.get(c.STEP_PROGRESS_TOTAL))
                if done is not None
                else None,
                progress_message=_str(attrs.get(c.STEP_PROGRESS_MESSAGE))
                if done is not None
                else None,
                progress_ns=span.end_time if done is not None else None,
            )
        )
    elif c.FLOW_STATUS in attrs or name == f"{c.FLOW_SPAN_PREFIX}{flow_name}":
        row = _flow_identity(batch, flow_id, attrs)
        row.start_ns = span.start_time
        _append_flow(batch, row)
        status = _str(attrs.get(c.FLOW_STATUS)) or (c.FAILED if failed else c.COMPLETED)
        row.status = status
        row.end_ns = span.end_time if status != c.RUNNING else None
        row.timeout_s = received_timeout(attrs.get(c.FLOW_TIMEOUT))
        row.end_on_exit = _end_on_exit(attrs)
        row.trace_id, row.span_id, row.service = trace_id, span_id, service
        if status == c.FAILED:
            row.error_type, row.error_message = _span_error(span, attrs)
    else:
        _flow_seen(batch, flow_id, attrs, span.start_time)
        batch.spans.append(
            SpanRow(
                span_id=span_id,
                flow_id=flow_id,
                name=name,
                trace_id=trace_id,
                parent_span_id=parent,
                kind=span.kind.name.lower(),
                service=service,
                start_ns=span.start_time,
                end_ns=span.end_time,
                error=failed,
            )
        )


def _end_on_exit(attrs: Mapping[str, Any]) -> bool | None:
    value = attrs.get(c.FLOW_END_ON_EXIT)
    return None if value is None else bool(value)


# -- log records --------------------------------------------------------------------------------


def _body(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(jsonable(value))
    except (TypeError, ValueError):
        return str(value)


def add_log_record(batch: Batch, readable: ReadableLogRecord | ReadWriteLogRecord) -> None:
    record = readable.log_record
    attrs = plain(record.attributes)
    flow_id = _str(attrs.get(c.FLOW_ID))
    if not flow_id:
        return
    ts = record.timestamp or record.observed_timestamp
    trace_id, span_id = _trace_hex(record.trace_id), _span_hex(record.span_id)
    service = _service(readable.resource.attributes) if readable.resource else None
    event = record.event_name
    if event:
        _add_event(batch, flow_id, attrs, event, ts, trace_id, span_id, service)
        return
    scope = readable.instrumentation_scope
    batch.logs.append(
        LogRow(
            flow_id=flow_id,
            ts_ns=ts,
            severity=record.severity_text,
            body=_body(record.body),
            logger=scope.name if scope else None,
            step_name=_str(attrs.get(c.STEP_NAME)),
            service=service,
            trace_id=trace_id,
            span_id=span_id,
            attributes=user_attributes(attrs),
        )
    )
    _flow_seen(batch, flow_id, attrs, ts)


def add_lifecycle(batch: Batch, event: Lifecycle, service: str | None) -> None:
    """A lifecycle record of an OTel event kind, as `add_log_record` reads the log record
    `sinks.otel_logs.to_log_record` makes of it (store.processor.StoreEventSink)."""
    attrs = event.event_attributes()
    flow_id = _str(attrs.get(c.FLOW_ID))
    if not flow_id:
        return
    trace_id, span_id = _trace_hex(event.trace_id), _span_hex(event.span_id)
    _add_event(batch, flow_id, attrs, event.kind, event.time_ns, trace_id, span_id, service)


def _add_event(
    batch: Batch,
    flow_id: str,
    attrs: Mapping[str, Any],
    event: str,
    ts: int | None,
    trace_id: str | None,
    span_id: str | None,
    service: str | None,
) -> None:
    row = _flow_identity(batch, flow_id, attrs)
    row.start_ns = ts
    if event == c.EVENT_FLOW_START:
        row.timeout_s = received_timeout(attrs.get(c.FLOW_TIMEOUT))
        row.end_on_exit = _end_on_exit(attrs)
        row.trace_id, row.span_id, row.service = trace_id, span_id, service
    elif event == c.EVENT_FLOW_END:
        row.status = _str(attrs.get(c.FLOW_STATUS)) or c.COMPLETED
        row.start_ns = _int(attrs.get(c.FLOW_START_TIME)) or ts
        row.end_ns = _int(attrs.get(c.FLOW_END_TIME)) or ts
        row.trace_id = _str(attrs.get(c.FLOW_TRACE_ID))
        row.span_id = _str(attrs.get(c.FLOW_SPAN_ID))
        row.timeout_s = received_timeout(attrs.get(c.FLOW_TIMEOUT))
        if row.status == c.RUNNING:  # an end event always ends the flow
            row.status = c.COMPLETED
        row.error_type = _str(attrs.get(c.ERROR_TYPE))
        row.error_message = _str(attrs.get(c.ERROR_MESSAGE))
    elif event == c.EVENT_STEP_START:
        if span_id is not None:
            batch.steps.append(
                StepRow(
                    span_id=span_id,
                    flow_id=flow_id,
                    name=_str(attrs.get(c.STEP_NAME)) or "?",
                    trace_id=trace_id,
                    service=service,
                    optional=bool(attrs.get(c.STEP_OPTIONAL, False)),
                    start_ns=ts,
                    attributes=step_attributes(attrs),
                )
            )
    elif event == c.EVENT_STEP_PROGRESS:
        done = _number(attrs.get(c.STEP_PROGRESS_DONE))
        if span_id is not None and done is not None and ts is not None:
            batch.progress.append(
                ProgressRow(
                    span_id=span_id,
                    flow_id=flow_id,
                    ts_ns=ts,
                    done=done,
                    total=_number(attrs.get(c.STEP_PROGRESS_TOTAL)),
                    message=_str(attrs.get(c.STEP_PROGRESS_MESSAGE)),
                )
            )
    elif event == c.EVENT_STEP_ARTIFACT:
        name = _str(attrs.get(c.ARTIFACT_NAME))
        if span_id is not None and name and ts is not None:
            batch.artifacts.append(
                ArtifactRow(
                    span_id=span_id,
                    flow_id=flow_id,
                    name=name,
                    ts_ns=ts,
                    value=_str(attrs.get(c.ARTIFACT_VALUE)) or "null",
                    step_name=_str(attrs.get(c.STEP_NAME)),
                    service=service,
                )
            )
    else:
        name = _str(attrs.get(c.EVENT_NAME_ATTR)) if event == c.EVENT_FLOW_EVENT else event
        batch.events.append(
            EventRow(
                flow_id=flow_id,
                name=name or event,
                ts_ns=ts,
                service=service,
                trace_id=trace_id,
                span_id=span_id,
                step_name=_str(attrs.get(c.STEP_NAME)),
                attributes=user_attributes(attrs),
            )
        )
    _append_flow(batch, row)


def label_text(value: Any) -> str:
    """A label value as stored in, and compared against, the ``flow_labels`` index."""
    if isinstance(value, bool):
        return c.bool_text(value)
    return str(value)
