"""Every name dashfrog_sdk puts on the wire: attributes, baggage keys, event names, statuses.

This module is the wire contract (see ARCHITECTURE.md, "Data model"). Backends, the local flow
store and the tests all read these names; nothing else in the package spells them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

PREFIX: Final = "dashfrog."

# -- attributes (also baggage keys where marked) ---------------------------------------------
FLOW_ID: Final = "dashfrog.flow.id"  # spans, events, baggage
FLOW_NAME: Final = "dashfrog.flow.name"  # spans, events, baggage
TENANT: Final = "dashfrog.tenant"  # spans, events, baggage
LABEL_PREFIX: Final = "dashfrog.label."  # + user label key; spans, events, baggage
FLOW_PARENT_ID: Final = "dashfrog.flow.parent_id"  # child flow span, events, baggage
FLOW_STATUS: Final = "dashfrog.flow.status"  # flow span at its end, flow.end event
FLOW_TIMEOUT: Final = "dashfrog.flow.timeout_s"  # flow span, flow.start event, baggage
STEP_NAME: Final = "dashfrog.step.name"  # step span, step events
STEP_STATUS: Final = "dashfrog.step.status"  # step span at its end
STEP_OPTIONAL: Final = "dashfrog.step.optional"  # step span when optional
# A step given raise_on_error=False / retries / timeout (dashfrog_sdk.step): only then.
STEP_RAISE_ON_ERROR: Final = "dashfrog.step.raise_on_error"  # False: its error is swallowed
STEP_ATTEMPT: Final = "dashfrog.step.attempt"  # 1, 2, ...: one step span per attempt
STEP_ATTEMPTS: Final = "dashfrog.step.attempts"  # retries + 1: the most attempts it may take
STEP_RETRIED: Final = "dashfrog.step.retried"  # True: this attempt failed and another follows
STEP_TIMEOUT: Final = "dashfrog.step.timeout_s"  # the step's timeout, seconds
EVENT_NAME_ATTR: Final = "dashfrog.event.name"  # dashfrog.flow.event records
TASK_ATTEMPT: Final = "dashfrog.task.attempt"  # Celery task span: 1, 2, ... across retries
# A step's progress (`s.progress()`): on dashfrog.step.progress events while it runs, and the
# last value on the step span at its end. done/total are numbers, message a string.
STEP_PROGRESS_DONE: Final = "dashfrog.step.progress.done"
STEP_PROGRESS_TOTAL: Final = "dashfrog.step.progress.total"  # absent: no known total
STEP_PROGRESS_MESSAGE: Final = "dashfrog.step.progress.message"  # absent: no message
# A step's artifact (`s.artifact()`): on dashfrog.step.artifact events only (never on a span,
# never in baggage); the value is its JSON text.
ARTIFACT_NAME: Final = "dashfrog.artifact.name"
ARTIFACT_VALUE: Final = "dashfrog.artifact.value"

# What a process needs to close a flow it did not start (ARCHITECTURE.md, "Cross-process end").
# Carried in baggage, copied onto the dashfrog.flow.end event.
FLOW_TRACE_ID: Final = "dashfrog.flow.trace_id"  # 32 hex: trace of the span that started the flow
FLOW_SPAN_ID: Final = "dashfrog.flow.span_id"  # 16 hex: the flow span
FLOW_START_TIME: Final = "dashfrog.flow.start_time"  # unix ns (int on events, decimal in baggage)
FLOW_END_TIME: Final = "dashfrog.flow.end_time"  # unix ns, flow.end event
FLOW_DURATION_MS: Final = "dashfrog.flow.duration_ms"  # float, flow.end event
FLOW_END_ON_EXIT: Final = "dashfrog.flow.end_on_exit"  # bool, flow span and flow.start event
ERROR_TYPE: Final = "dashfrog.error.type"  # flow.end event / step span when failed
ERROR_MESSAGE: Final = "dashfrog.error.message"

# Internal baggage members (never user-visible attributes).
FLOW_FAILED: Final = "dashfrog.flow.failed"  # "true" once a non-optional step failed upstream
BAGGAGE_SIGNATURE: Final = "dashfrog.sig"  # HMAC over the other dashfrog.* members

# HTTP response header: a downstream service tells its caller that the flow failed there
# (dashfrog_sdk.outcome). Its value is baggage-encoded dashfrog.* members, signed like baggage.
OUTCOME_HEADER: Final = "dashfrog-flow-outcome"

# -- event names (OTel log records with this event_name) -------------------------------------
EVENT_FLOW_START: Final = "dashfrog.flow.start"
EVENT_STEP_START: Final = "dashfrog.step.start"
EVENT_FLOW_END: Final = "dashfrog.flow.end"
EVENT_FLOW_EVENT: Final = "dashfrog.flow.event"
EVENT_STEP_PROGRESS: Final = "dashfrog.step.progress"  # at most every PROGRESS_INTERVAL_NS
EVENT_STEP_ARTIFACT: Final = "dashfrog.step.artifact"
OTEL_EVENTS: Final = frozenset(
    {
        EVENT_FLOW_START,
        EVENT_STEP_START,
        EVENT_FLOW_END,
        EVENT_FLOW_EVENT,
        EVENT_STEP_PROGRESS,
        EVENT_STEP_ARTIFACT,
    }
)
# Events that describe a step rather than a flow: no backend lists them as flow.event()s.
STEP_EVENTS: Final = frozenset({EVENT_STEP_START, EVENT_STEP_PROGRESS, EVENT_STEP_ARTIFACT})

# Lifecycle record kinds that are no OTel event (never on the wire): only the console and the
# flow metrics see them. With the EVENT_* names above, every kind of lifecycle.records.Lifecycle.
STEP_END: Final = "dashfrog.step.end"  # a step's block exited
FLOW_CLOSE: Final = "dashfrog.flow.close"  # the flow span ended where it was started

# -- statuses ----------------------------------------------------------------------------
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
# A flow: derived by the store (its deadline passed with no end). A step: it ended past its
# timeout (dashfrog_sdk.status, "A step's timeout").
TIMED_OUT: Final = "timed_out"
OPEN: Final = (RUNNING, TIMED_OUT)  # a flow with no end yet (a timed-out step has ended)

FlowStatus = Literal["running", "completed", "failed", "cancelled"]
StepStatus = Literal["completed", "failed", "cancelled", "timed_out"]

# -- instrumentation scope ------------------------------------------------------------------
SCOPE_NAME: Final = "dashfrog_sdk"
PRINT_LOGGER: Final = "print"  # the scope of captured print() lines (DASHFROG_CAPTURE_PRINT)

# Span names: "flow <name>" and "step <name>" keep flows and steps apart in any trace UI.
FLOW_SPAN_PREFIX: Final = "flow "
STEP_SPAN_PREFIX: Final = "step "

# W3C Baggage limits (https://www.w3.org/TR/baggage/#limits).
BAGGAGE_MAX_BYTES: Final = 8192
BAGGAGE_MAX_MEMBERS: Final = 180
BAGGAGE_MAX_MEMBER_BYTES: Final = 4096


def bool_text(value: bool) -> str:
    """A bool as dashfrog writes it into labels and baggage: ``"true"`` / ``"false"``."""
    return "true" if value else "false"


def label_key(key: str) -> str:
    """The attribute and baggage key of a user label."""
    return LABEL_PREFIX + key


def labels_of(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The user labels among flow attributes or baggage members, by label key."""
    n = len(LABEL_PREFIX)
    return {k[n:]: v for k, v in attributes.items() if k.startswith(LABEL_PREFIX)}
