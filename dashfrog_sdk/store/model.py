"""Plain dataclasses returned by the flow store's query API.

Times are unix nanoseconds (``*_ns``) with ``datetime`` properties (UTC) for convenience;
durations are milliseconds. Lists of results are :class:`Results`, a ``list`` with
``to_dataframe()`` for notebooks and reports (requires pandas).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from dashfrog_sdk import conventions as c
from dashfrog_sdk import progress as _progress

LabelValue = str | int | float | bool
AttrValue = Any  # JSON-compatible attribute value (str, number, bool or a list of them)

T = TypeVar("T")


def ns_to_datetime(ns: int | None) -> datetime | None:
    """Unix nanoseconds as an aware UTC datetime (``None`` stays ``None``)."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_dataframe() needs pandas: pip install 'dashfrog-sdk[pandas]'"
        ) from exc


def to_records(items: list[Any]) -> list[dict[str, Any]]:
    """Dataclass instances as flat dicts, with ``start``/``end`` datetimes added."""
    rows: list[dict[str, Any]] = []
    for item in items:
        row = {
            f.name: getattr(item, f.name)
            for f in dataclasses.fields(item)
            if not isinstance(getattr(item, f.name), list)
        }
        row.update(times(item))
        rows.append(row)
    return rows


def times(item: object) -> dict[str, datetime | None]:
    """``start`` / ``end`` of a record with ``start_ns`` / ``end_ns``, as datetimes."""
    return {
        key: ns_to_datetime(getattr(item, key + "_ns"))
        for key in ("start", "end")
        if hasattr(item, key + "_ns")
    }


class Results(list[T]):
    """A list of query results with a pandas export."""

    def to_dataframe(self) -> Any:
        """A ``pandas.DataFrame`` with one row per result (pandas must be installed)."""
        return _pandas().DataFrame.from_records(to_records(list(self)))


class _Timed:
    """Records with `start_ns` / `end_ns`; `.start` / `.end` are them as datetimes."""

    start_ns: int | None
    end_ns: int | None

    @property
    def start(self) -> datetime | None:
        return ns_to_datetime(self.start_ns)

    @property
    def end(self) -> datetime | None:
        return ns_to_datetime(self.end_ns)


def artifact_value(text: str) -> Any:
    """An artifact's JSON text as its value (text that is no JSON, e.g. cut by an attribute
    length limit on the way, stays the text)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class Progress:
    """How far a step is, from its latest ``s.progress(done, total, message)``."""

    done: float
    total: float | None  # None: not known
    message: str | None
    ts_ns: int | None  # when it was recorded (the step's end for its last value)

    @property
    def fraction(self) -> float | None:
        """done / total (0..1), or None with no total."""
        return min(1.0, self.done / self.total) if self.total else None

    def text(self, step: str | None = None) -> str:
        """``import_rows 40% (400/1000)`` (``40% (400/1000)`` without a step name)."""
        return _progress.text(step, self.done, self.total, self.message)


@dataclass
class Flow(_Timed):
    """One flow as the store knows it now."""

    id: str
    name: str | None
    tenant: str | None
    status: str  # running / completed / failed / cancelled / timed_out
    labels: dict[str, LabelValue]
    start_ns: int | None
    end_ns: int | None
    duration_ms: float | None  # flow end - start; elapsed so far while running
    parent_id: str | None
    service: str | None
    trace_id: str | None
    span_id: str | None
    timeout_s: float | None
    error_type: str | None
    error_message: str | None
    current_step: str | None = None  # filled by FlowStore.flow() and flows() while running
    current_progress: Progress | None = None  # the current step's progress, if it said any

    @property
    def ended(self) -> bool:
        return self.end_ns is not None


@dataclass
class Step(_Timed):
    """One step of a flow (a ``step <name>`` span, or its start event while it runs)."""

    span_id: str
    name: str
    service: str | None
    status: str  # running / completed / failed / cancelled / timed_out
    start_ns: int | None
    end_ns: int | None
    duration_ms: float | None
    optional: bool
    error_type: str | None
    error_message: str | None
    attributes: dict[str, AttrValue]
    parent_span_id: str | None
    parent_step_id: str | None  # the enclosing step's span id, through any spans between
    depth: int  # 0 for a step directly under the flow
    trace_id: str | None
    # A step given retries / timeout / raise_on_error=False (None / defaults otherwise).
    attempt: int | None = None  # 1, 2, ...: this span is that attempt of the step
    attempts: int | None = None  # the most attempts the step may take (retries + 1)
    retried: bool = False  # this attempt failed and another one followed
    timeout_s: float | None = None
    raise_on_error: bool = True  # False: its error was swallowed, the flow went on
    progress: Progress | None = None  # its latest s.progress(); the last one once it ended
    artifacts: dict[str, Any] = field(default_factory=dict)  # s.artifact(): name -> JSON value

    @property
    def failed_flow(self) -> bool:
        """Whether this step's end failed its flow (dashfrog_sdk.status): failed or timed out,
        not optional, not error-isolated, not an attempt that was retried."""
        return (
            self.status in (c.FAILED, c.TIMED_OUT)
            and not self.optional
            and self.raise_on_error
            and not self.retried
        )

    @property
    def label(self) -> str:
        """The step's name, with its attempt for a step with retries: ``fetch (attempt 2/4)``."""
        if self.attempt is None:
            return self.name
        return f"{self.name} (attempt {self.attempt}/{self.attempts or '?'})"


# Where a stored step's options are kept: under their wire names among its stored attributes
# (no column of their own), read back into Step's fields by step_options().
_STEP_OPTIONS = {
    c.STEP_ATTEMPT: "attempt",
    c.STEP_ATTEMPTS: "attempts",
    c.STEP_RETRIED: "retried",
    c.STEP_TIMEOUT: "timeout_s",
    c.STEP_RAISE_ON_ERROR: "raise_on_error",
}


def step_options(attributes: dict[str, AttrValue]) -> dict[str, Any]:
    """Take a step's options out of its stored `attributes` (in place), as Step keywords."""
    found: dict[str, Any] = {}
    for key, field_name in _STEP_OPTIONS.items():
        if key in attributes:
            value = attributes.pop(key)
            found[field_name] = _option_value(field_name, value)
    return found


def _option_value(field_name: str, value: Any) -> Any:
    # Written by our SDK (ints, a float, bools) or, through ClickHouse's string maps, as text.
    try:
        if field_name in ("attempt", "attempts"):
            return int(value)
        if field_name == "timeout_s":
            return float(value)
    except (TypeError, ValueError):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


@dataclass
class SpanRecord:
    """Any other span inside a flow (HTTP server/client, Celery, the user's own)."""

    span_id: str
    parent_span_id: str | None
    name: str
    kind: str | None
    service: str | None
    start_ns: int | None
    end_ns: int | None
    error: bool
    trace_id: str | None


class _Stamped:
    """Records with a `ts_ns` timestamp; `.time` is it as a datetime."""

    ts_ns: int | None

    @property
    def time(self) -> datetime | None:
        return ns_to_datetime(self.ts_ns)


@dataclass
class FlowEvent(_Stamped):
    """A custom ``flow.event(name, ...)`` record."""

    name: str
    ts_ns: int | None
    service: str | None
    step_name: str | None
    attributes: dict[str, AttrValue]
    trace_id: str | None
    span_id: str | None


@dataclass
class LogEntry(_Stamped):
    """A Python ``logging`` record emitted while the flow was current."""

    ts_ns: int | None
    severity: str | None
    body: str | None
    logger: str | None
    step_name: str | None
    service: str | None
    attributes: dict[str, AttrValue]
    trace_id: str | None
    span_id: str | None


@dataclass
class FlowDetail(Flow):
    """One flow with everything the store holds about it."""

    steps: list[Step] = field(default_factory=list)
    children: list[Flow] = field(default_factory=list)
    events: list[FlowEvent] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    # Top-level steps the last completed run of this flow name had and this run has not
    # reached yet (only while running): what a flowchart shows as "pending".
    pending_steps: list[str] = field(default_factory=list)

    @property
    def services(self) -> list[str]:
        """Services in order of first appearance: the flow's own, then its steps'."""
        seen: list[str] = []
        for service in [self.service, *(s.service for s in self.steps)]:
            if service and service not in seen:
                seen.append(service)
        return seen

    @property
    def current(self) -> Step | None:
        """The step the flow is on: the latest started step that has not finished."""
        if self.status not in ("running", "timed_out"):
            return None
        running = [s for s in self.steps if s.status == "running"]
        return running[-1] if running else None

    def to_dataframe(self) -> Any:
        """The steps as a ``pandas.DataFrame`` (pandas must be installed)."""
        return _pandas().DataFrame.from_records(to_records(list(self.steps)))


@dataclass
class StepDuration:
    name: str
    service: str | None
    status: str
    duration_ms: float | None
    share: float | None  # fraction of the flow's duration


@dataclass
class FlowDurations:
    """Where a flow's time went: the flow's duration and each step's."""

    flow_id: str
    duration_ms: float | None
    steps: list[StepDuration]

    @classmethod
    def of(cls, detail: FlowDetail) -> FlowDurations:
        """The flow's duration and each step's, with each step's share (both backends)."""
        total = detail.duration_ms
        return cls(
            flow_id=detail.id,
            duration_ms=total,
            steps=[
                StepDuration(
                    name=s.name,
                    service=s.service,
                    status=s.status,
                    duration_ms=s.duration_ms,
                    share=(s.duration_ms / total) if s.duration_ms is not None and total else None,
                )
                for s in detail.steps
            ],
        )

    def by_step(self) -> dict[str, float]:
        """Total milliseconds per step name (repeated steps summed)."""
        totals: dict[str, float] = {}
        for step in self.steps:
            totals[step.name] = totals.get(step.name, 0.0) + (step.duration_ms or 0.0)
        return totals


@dataclass
class FlowStats:
    """Aggregates for one flow name and tenant."""

    name: str | None
    tenant: str | None
    count: int
    running: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int
    failure_rate: float  # (failed + timed_out) / flows that ended or timed out
    p50_ms: float | None
    p95_ms: float | None
