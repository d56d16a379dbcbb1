"""`flow.start` / `flow.end` / `flow.fail` / `flow.current` / `flow.event`.

Example:
    >>> from dashfrog_sdk import flow, step
    >>> with flow.start("order_processing", tenant="customer-123", region="eu") as flow_id:
    ...     with step.start("validate_order"):
    ...         ...
"""

from __future__ import annotations

from collections.abc import Mapping
from time import time_ns
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, validation
from dashfrog_sdk import status as flow_status
from dashfrog_sdk._otel.keys import detach
from dashfrog_sdk._otel.spans import record_exception, stamp, stamp_one
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk.context import (
    FlowInfo,
    FlowState,
    base_attributes,
    current_flow,
    flow_state,
    lookup,
    with_flow,
)
from dashfrog_sdk.conventions import FlowStatus
from dashfrog_sdk.error_text import describe, error_attributes
from dashfrog_sdk.ids import flow_id as new_flow_id
from dashfrog_sdk.lifecycle import records
from dashfrog_sdk.lifecycle.exit import open_flows
from dashfrog_sdk.lifecycle.scope import Scope
from dashfrog_sdk.status import CANCELLING

__all__ = ["FlowScope", "current", "end", "event", "fail", "start"]


class FlowScope(Scope[str]):
    """What `flow.start()` returns: a context manager (sync and async) and a decorator."""

    __slots__ = (
        "_depth",
        "_end_on_exit",
        "_kind",
        "_span",
        "_state",
        "_timeout",
        "_token",
    )

    def __init__(self, kind: _Kind, end_on_exit: bool, timeout: float | None) -> None:
        self._active = False
        self._kind = kind
        self._end_on_exit = end_on_exit
        self._timeout = timeout
        self._state: FlowState | None = None
        self._span: Span | None = None
        self._token: object = None
        self._depth = 0

    def _copy(self) -> FlowScope:
        return FlowScope(self._kind, self._end_on_exit, self._timeout)

    def _stand_in(self) -> str:
        return new_flow_id()  # an id like any other, of a flow not recorded

    def _enter(self) -> str:
        rt = runtime if runtime.configured else runtime.ensure()
        parent = otel_context.get_current()
        outer, depth, _ = lookup(parent)
        flow_id = new_flow_id()
        parent_id = outer.info.id if outer is not None else None
        kind = self._kind
        start = time_ns()
        span = rt.tracer.start_span(kind.span_name, parent, start_time=start)
        span_context = span.get_span_context()
        state = FlowState(
            FlowInfo(flow_id, kind.name, kind.tenant, dict(kind.labels), parent_id),
            trace_id=span_context.trace_id,
            span_id=span_context.span_id,
            start_time_ns=start,
            end_on_exit=self._end_on_exit,
            timeout_s=self._timeout,
            local=True,
            base=kind.attributes,
        )
        stamp(span, state.attributes, state.settings)
        self._depth = depth
        self._token = otel_context.attach(with_flow(parent, state, span, depth))
        self._state, self._span = state, span
        open_flows.add(state)
        records.flow_started(state, depth)
        return flow_id

    def _exit(self, exc: BaseException | None) -> None:
        state, span = self._state, self._span
        if state is None or span is None:  # _enter raised (diagnostics reported it)
            return
        detach(self._token)
        open_flows.discard(state)
        end = time_ns()
        status, ends_here = flow_status.block_exit(state, exc)
        escaped = exc is not None and not isinstance(exc, CANCELLING)
        if escaped:
            record_exception(span, exc)  # type: ignore[arg-type]
        stamp_one(span, c.FLOW_STATUS, status)
        if status == c.FAILED or escaped:  # an exception after flow.end() still marks the span
            error = exc if escaped else state.error
            span.set_status(Status(StatusCode.ERROR, describe(error)))
            if error is not None:
                span.set_attributes(error_attributes(error))
        span.end(end)
        records.flow_closed(state, end, status, self._depth, ends_here)
        if ends_here and not state.end_on_exit:
            # The start event announced an end elsewhere; say it ended here instead.
            records.flow_ended(state, status, end, state.trace_id, state.span_id)


def start(
    name: str,
    tenant: str,
    *,
    end_on_exit: bool = True,
    timeout: float | None = None,
    **labels: str | int | float | bool,
) -> FlowScope:
    """Start a flow: a customer-scoped workflow made of steps.

    Args:
        name: the flow's name, e.g. ``"order_processing"``.
        tenant: the customer the flow runs for; on every span, event and metric of the flow.
        end_on_exit: ``False`` when another process ends the flow with `flow.end()`.
        timeout: seconds after which a flow with no end shows as ``timed_out`` in the store.
        **labels: str/int/float/bool labels, recorded as ``dashfrog.label.<key>``.

    Example:
        >>> with flow.start("data_import", tenant="acme-corp", env="production") as flow_id:
        ...     ...
    """
    # Validated kinds are looked up only for plain-str arguments: True == 1 == 1.0 as keys (their
    # labels read "true", "1" and "1.0"), and a str subclass may compare equal to a different
    # string or raise from __hash__. Anything else is validated every time.
    kind: _Kind | None = None
    key: tuple[object, ...] | None = None
    if type(name) is str and type(tenant) is str:
        for value in labels.values():
            if type(value) is not str:
                break
        else:
            key = (name, tenant, *labels.items())
            kind = _kinds.get(key)
    where = "flow.start()"
    if kind is None:
        kind = _kind(
            validation.name(where, "name", name),
            validation.name(where, "tenant", tenant),
            validation.labels(where, labels),
        )
        if key is not None:
            if len(_kinds) >= _MAX_KINDS:
                _kinds.clear()
            _kinds[key] = kind
    return FlowScope(
        kind,
        end_on_exit
        if end_on_exit is True
        else validation.boolean(where, "end_on_exit", end_on_exit),
        None if timeout is None else validation.timeout(where, timeout),
    )


class _Kind(NamedTuple):
    """What flows with the same name, tenant and labels share, validated and computed once."""

    name: str
    tenant: str
    labels: Mapping[str, str]  # copied into each flow's FlowInfo
    attributes: Mapping[str, str]  # context.base_attributes()
    span_name: str


def _kind(name: str, tenant: str, labels: dict[str, str]) -> _Kind:
    return _Kind(
        name,
        tenant,
        labels,
        base_attributes(name, tenant, labels),
        c.FLOW_SPAN_PREFIX + name,
    )


# Validated kinds by (name, tenant, *label items). Bounded: tenants can be many; a full cache is
# simply emptied (a miss costs one validation).
_MAX_KINDS = 4096
_kinds: dict[tuple[object, ...], _Kind] = {}


def _end(status: FlowStatus, error: BaseException | str | None, where: str) -> bool:
    state = flow_state()
    if state is None:
        diagnostics.report(
            "flow.end_outside_flow",
            "dashfrog_sdk: %s called outside any flow (no flow context here: was the task or "
            "request instrumented?); nothing to end",
            where,
        )
        return False
    if state.ended:
        return False
    status = flow_status.end(state, status, error)
    runtime.ensure()
    here = trace.get_current_span().get_span_context()
    records.flow_ended(state, status, time_ns(), here.trace_id, here.span_id)
    return True


def end() -> bool:
    """End the current flow, wherever its context arrived (an API, a Celery worker).

    The flow ends ``completed``, or ``failed`` if one of its non-optional steps failed in this
    process. Returns ``False`` (and warns once) outside any flow, and for a flow already ended.
    """
    return _end(c.COMPLETED, None, "flow.end()")


def fail(error: BaseException | str | None = None) -> bool:
    """End the current flow as ``failed``, recording `error` (an exception or a message)."""
    if error is not None and not isinstance(error, BaseException | str):
        raise TypeError(f"flow.fail(): error must be an exception or a string, got {error!r}")
    return _end(c.FAILED, error, "flow.fail()")


def current() -> FlowInfo | None:
    """The current flow (`FlowInfo(id, name, tenant, labels, parent_id)`), or None."""
    return current_flow()


def event(name: str, **attributes: Any) -> bool:
    """Record a custom event on the current flow (`dashfrog.flow.event`, `dashfrog.event.name`).

    Example:
        >>> flow.event("payment_retried", attempt=2)
    """
    where = "flow.event()"
    validation.name(where, "name", name)
    attrs = validation.attributes(where, attributes)
    state = flow_state()
    if state is None:
        diagnostics.report(
            "flow.event_outside_flow",
            "dashfrog_sdk: flow.event(%r) called outside any flow; event dropped",
            name,
        )
        return False
    runtime.ensure()
    attrs[c.EVENT_NAME_ATTR] = name
    here = trace.get_current_span().get_span_context()
    records.custom_event(state, attrs, time_ns(), here.trace_id, here.span_id)
    return True
