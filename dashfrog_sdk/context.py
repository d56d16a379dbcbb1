"""Reading and writing the flow context: the only code that touches dashfrog baggage keys.

A flow lives in the OpenTelemetry context twice:

* under a private context key, as the :class:`FlowState` object of the process that started it
  (fast to read, carries mutable status such as "a step failed");
* as W3C baggage members (``dashfrog.flow.id``, ``dashfrog.tenant``, ...), which is what crosses
  process boundaries. A process that received the flow over HTTP or a task queue rebuilds a
  :class:`FlowState` from baggage once per flow and caches it (see :func:`flow_state`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Span, set_span_in_context

from dashfrog_sdk import conventions as c
from dashfrog_sdk import validation
from dashfrog_sdk._otel.keys import BAGGAGE_KEY, SPAN_KEY
from dashfrog_sdk.conventions import FlowStatus

LabelValue = str | int | float | bool

# FlowState.settings without a timeout (shared: they are only read).
_SETTINGS: dict[bool, Mapping[str, Any]] = {
    True: {c.FLOW_END_ON_EXIT: True},
    False: {c.FLOW_END_ON_EXIT: False},
}

_FLOW_KEY = otel_context.create_key("dashfrog-flow")
_STEP_KEY = otel_context.create_key("dashfrog-step")
# OTel's private baggage and span keys ("" if unavailable: the public way), see dashfrog_sdk._otel.
_BAGGAGE_KEY = BAGGAGE_KEY
_SPAN_KEY = SPAN_KEY


class FlowInfo(NamedTuple):
    """What `flow.current()` returns: the identity of the flow the caller is in.

    Example:
        >>> info = flow.current()
        >>> info.tenant if info else None
    """

    id: str
    name: str
    tenant: str
    labels: Mapping[str, str]
    parent_id: str | None = None


def base_attributes(name: str, tenant: str, labels: Mapping[str, str]) -> dict[str, str]:
    """A flow's attributes except its id and parent id: the part flows of a kind share."""
    attrs = {c.FLOW_NAME: name, c.TENANT: tenant}
    for key, value in labels.items():
        attrs[c.label_key(key)] = value
    return attrs


class FlowState:
    """A flow as this process knows it. Created once per flow; read on every span."""

    __slots__ = (
        "attributes",
        "baggage",
        "end_on_exit",
        "ended",
        "error",
        "failed",
        "failed_here",
        "final_status",
        "info",
        "live_baggage",
        "local",
        "settings",
        "span_id",
        "start_time_ns",
        "timeout_s",
        "trace_id",
    )

    def __init__(
        self,
        info: FlowInfo,
        *,
        trace_id: int,
        span_id: int,
        start_time_ns: int,
        end_on_exit: bool,
        timeout_s: float | None,
        local: bool,
        base: Mapping[str, str] | None = None,
    ) -> None:
        """`trace_id`, `span_id`: the flow span's. `base`: `base_attributes(...)` of the flow's
        name, tenant and labels, if known."""
        self.info = info
        self.trace_id = trace_id
        self.span_id = span_id
        self.start_time_ns = start_time_ns
        self.end_on_exit = end_on_exit
        self.timeout_s = timeout_s
        self.local = local  # True in the process whose `flow.start` created it
        self.failed = False  # a non-optional step failed, or flow.fail() was called
        # ... in this process (not only upstream, as baggage said): what a downstream process
        # reports back to its caller and records for the store (dashfrog_sdk.outcome).
        self.failed_here = False
        self.error: BaseException | str | None = None
        self.ended = False
        self.final_status: FlowStatus | None = None
        # Computed once, reused by every span, event and metric of the flow. Every value is a
        # str (labels are validated to strings), so the dict is also the baggage's starting point.
        if base is None:
            base = base_attributes(info.name, info.tenant, info.labels)
        attrs: dict[str, Any] = {c.FLOW_ID: info.id, **base}
        if info.parent_id:
            attrs[c.FLOW_PARENT_ID] = info.parent_id
        self.attributes: Mapping[str, Any] = attrs
        # What the flow span and the flow.start event carry beyond `attributes`.
        self.settings: Mapping[str, Any] = (
            _SETTINGS[end_on_exit]
            if timeout_s is None
            else {c.FLOW_END_ON_EXIT: end_on_exit, c.FLOW_TIMEOUT: timeout_s}
        )
        # The baggage that carries the flow to other processes: its attributes, and what the
        # process that ends it needs to report its true start (ARCHITECTURE.md, "Cross-process end").
        self.baggage: dict[str, str] = {
            **attrs,
            c.FLOW_TRACE_ID: f"{trace_id:032x}",
            c.FLOW_SPAN_ID: f"{span_id:016x}",
            c.FLOW_START_TIME: str(start_time_ns),
        }
        if timeout_s is not None:
            self.baggage[c.FLOW_TIMEOUT] = repr(timeout_s)
        # Baggage dicts attached with this flow besides `baggage` itself (with_flow merged the
        # parent's members in): a step failure is written into them too, so requests and tasks
        # sent afterwards tell the process that ends the flow.
        self.live_baggage: list[dict[str, object]] = []


def _baggage_of(ctx: Context | None) -> Mapping[str, object]:
    return otel_baggage.get_all(ctx)


# Flows that arrived from another process, by id. Bounded: a worker sees an unbounded number
# of flows over its life. The entry keeps the per-process "a step failed" / "ended" marks.
_REMOTE_MAX = 4096
_remote: OrderedDict[str, FlowState] = OrderedDict()
_remote_lock = threading.Lock()


def _state_from_baggage(bag: Mapping[str, object]) -> FlowState | None:
    flow_id = bag.get(c.FLOW_ID)
    if not isinstance(flow_id, str) or not flow_id:
        return None
    with _remote_lock:
        state = _remote.get(flow_id)
        if state is not None:
            _remote.move_to_end(flow_id)
            if not state.failed and bag.get(c.FLOW_FAILED) == c.bool_text(True):
                state.failed = True
            return state
    name, tenant = bag.get(c.FLOW_NAME), bag.get(c.TENANT)
    if not isinstance(name, str) or not isinstance(tenant, str):
        return None
    labels = {k: v for k, v in c.labels_of(bag).items() if isinstance(v, str)}
    parent = bag.get(c.FLOW_PARENT_ID)
    timeout = validation.received_timeout(bag.get(c.FLOW_TIMEOUT))
    state = FlowState(
        FlowInfo(flow_id, name, tenant, labels, parent if isinstance(parent, str) else None),
        trace_id=_hex_or_zero(bag.get(c.FLOW_TRACE_ID)),
        span_id=_hex_or_zero(bag.get(c.FLOW_SPAN_ID)),
        start_time_ns=_int_or_zero(bag.get(c.FLOW_START_TIME)),
        end_on_exit=False,
        timeout_s=timeout,
        local=False,
    )
    state.failed = bag.get(c.FLOW_FAILED) == c.bool_text(True)
    with _remote_lock:
        state = _remote.setdefault(flow_id, state)
        while len(_remote) > _REMOTE_MAX:
            _remote.popitem(last=False)
    return state


def _hex_or_zero(value: object) -> int:
    try:
        return int(str(value), 16)
    except ValueError:
        return 0


def _int_or_zero(value: object) -> int:
    # Unix nanoseconds have 19 digits: through float() they would lose their last ones.
    try:
        return int(str(value))
    except ValueError:
        return 0


def flow_state(ctx: Context | None = None) -> FlowState | None:
    """The flow current in `ctx` (default: the current context), local or from baggage."""
    state = otel_context.get_value(_FLOW_KEY, ctx)
    if state is not None:
        return state  # type: ignore[return-value]
    bag = _baggage_of(ctx)
    if not bag:
        return None
    return _state_from_baggage(bag)


def lookup(parent: Context) -> tuple[FlowState | None, int, bool]:
    """The flow current in `parent`, the nesting depth of a scope started in it, and whether it
    runs inside an optional step (hot path)."""
    state: FlowState | None = parent.get(_FLOW_KEY)  # type: ignore[assignment]
    frame: tuple[str | None, int, bool] | None = parent.get(_STEP_KEY)  # type: ignore[assignment]
    if state is None:
        bag = parent.get(_BAGGAGE_KEY) if _BAGGAGE_KEY else otel_baggage.get_all(parent)
        if bag:
            state = _state_from_baggage(bag)  # type: ignore[arg-type]
    if frame is None:
        return state, 0, False
    return state, frame[1] + 1, frame[2]


def current_flow() -> FlowInfo | None:
    """The current flow's identity, or None outside any flow."""
    state = flow_state()
    return state.info if state is not None else None


def current_step_name() -> str | None:
    """The name of the innermost step running in this context, or None."""
    frame = otel_context.get_value(_STEP_KEY)
    return frame[0] if isinstance(frame, tuple) else None


def with_flow(parent: Context, state: FlowState, span: Span, depth: int = 0) -> Context:
    """A context in which `state` is the current flow, its baggage set, and `span` current.

    The baggage keeps the parent's non-dashfrog members; the parent flow's dashfrog members are
    replaced, not merged.
    """
    old = parent.get(_BAGGAGE_KEY) if _BAGGAGE_KEY else _baggage_of(parent)
    if old:
        bag: dict[str, object] = {
            k: v
            for k, v in old.items()  # type: ignore[attr-defined]
            if not k.startswith(c.PREFIX)
        }
        bag.update(state.baggage)
        state.live_baggage.append(bag)
    else:
        # The common case: the flow's own dict, shared (nobody writes into a context's
        # baggage dict; OTel's set_baggage copies it), so status.fail_flow() reaches it directly.
        bag = state.baggage  # type: ignore[assignment]
    if not _BAGGAGE_KEY:  # the public way (dashfrog_sdk._otel)
        ctx = with_step(parent, span, None, depth)
        ctx = otel_context.set_value(_FLOW_KEY, state, ctx)
        for key, value in bag.items():
            ctx = otel_baggage.set_baggage(key, value, ctx)
        return ctx
    # One copy of the parent (Context forbids item assignment, so the new values go in as
    # keyword arguments of the constructor; the keys are strings, so that is allowed).
    return Context(
        parent,
        **{_SPAN_KEY: span, _FLOW_KEY: state, _STEP_KEY: (None, depth, False), _BAGGAGE_KEY: bag},
    )


def with_step(
    parent: Context,
    span: Span,
    step_name: str | None,
    depth: int,
    optional: bool = False,
    state: FlowState | None = None,
) -> Context:
    """A context in which `step_name` is the current step and `span` the current span.

    `optional` is inherited by the steps inside: a failure under an optional step does not
    fail the flow. `state`, the flow `lookup` found: one that came in baggage is put under the
    flow key too, so the spans and steps inside find it without reading the baggage again.
    """
    values: dict[str, object] = {_STEP_KEY: (step_name, depth, optional)}
    if state is not None and _FLOW_KEY not in parent:
        values[_FLOW_KEY] = state
    if not _SPAN_KEY:  # the public way (dashfrog_sdk._otel)
        return Context(set_span_in_context(span, parent), **values)
    values[_SPAN_KEY] = span
    return Context(parent, **values)


def with_baggage_members(ctx: Context, members: Mapping[str, str]) -> Context:
    """`ctx` with `members` added to its baggage, in one Context copy (a server's hot path:
    OTel's `set_baggage` copies the context once per member)."""
    if not members:
        return ctx
    if _BAGGAGE_KEY:
        return otel_context.set_value(_BAGGAGE_KEY, {**_baggage_of(ctx), **members}, ctx)
    for name, value in members.items():  # the public way (dashfrog_sdk._otel)
        ctx = otel_baggage.set_baggage(name, value, ctx)
    return ctx


def only_span(span: Span) -> Context:
    """A new context holding just `span` as the current span (for records built off-thread)."""
    if _SPAN_KEY:
        return Context({_SPAN_KEY: span})
    return set_span_in_context(span, Context())  # the public way (dashfrog_sdk._otel)


def _reset_for_tests() -> None:
    with _remote_lock:
        _remote.clear()
