"""How a failure in a downstream process reaches the flow it belongs to.

A flow's rule "a failed non-optional step fails its flow, even when the exception is caught"
holds across processes in two ways:

* **For the store and every backend** (any transport): a process that joined a flow from
  baggage and saw it fail there (a non-optional step failed, or ``flow.fail()``) records a
  ``dashfrog.flow.end`` event with status ``failed`` when its request or task finishes
  (:func:`settle`). The status precedence (dashfrog_sdk.status) makes that failure win over a
  ``completed`` from any other process, whatever the order the records arrive in.
* **On the caller's own flow span** (synchronous HTTP): the server wrappers add a
  ``dashfrog-flow-outcome`` response header (:func:`response_header`) and the requests/httpx
  wrappers read it (:func:`on_response`): the caller's flow is marked failed with the
  downstream error, so its flow span ends ``failed`` with that ``dashfrog.error.type`` and
  message, in every OTLP backend.

The header is only ever about the flow the request carried: a server sets it only for a flow
that it joined from the caller's baggage, which it did only if it trusted that baggage
(``trust_incoming=True``, and a valid signature when ``DASHFROG_PROPAGATION_KEY`` is set). Its
value is W3C-baggage-encoded ``dashfrog.*`` members (flow id, status, error type and message),
HMAC-signed with the propagation key when one is set. A client accepts it only from a host it
sends flows to (``DASHFROG_PROPAGATE_TO``), for the flow current at the call, and, with a key,
with a valid signature; anything else is ignored and counted (``outcome.rejected``).
"""

from __future__ import annotations

from time import time_ns

from opentelemetry import trace

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk.context import FlowState, flow_state
from dashfrog_sdk.error_text import error_attributes
from dashfrog_sdk.lifecycle import records
from dashfrog_sdk.propagation import (
    INTERNAL,
    DashfrogBaggagePropagator,
    _members,
    encode_member,
    host_allowed,
    host_of,
    sign,
)
from dashfrog_sdk.setup import installed_config
from dashfrog_sdk.status import end as end_flow
from dashfrog_sdk.status import fail_flow

HEADER = c.OUTCOME_HEADER
# Bound on the message carried back: a header, not a log. (Type names are short.)
MAX_MESSAGE = 1024

# The three entry points run inside the application's requests and tasks (server middleware,
# client response hooks that OTel's instrumentors call unguarded): nothing they raise may reach
# the application. A failure is counted as outcome.errors and warned about once.
_guard = diagnostics.capture_internal_errors("outcome.errors", "the flow outcome header")

__all__ = ["HEADER", "DownstreamFailure", "on_response", "response_header", "settle"]


class DownstreamFailure(Exception):
    """The error a downstream service reported for the flow (what the caller's span records).

    Spans and events show the downstream error's own type and message (``ValueError: card
    exploded``), not this class: see error_text.error_attributes.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self._dashfrog_error_type = error_type
        self.message = message

    def __str__(self) -> str:
        return self.message


def _key() -> bytes | None:
    cfg = installed_config()
    return cfg.propagation_key if cfg is not None else None


def _failed_here(state: FlowState | None) -> FlowState | None:
    """`state` if it is a flow this process joined (not started) and saw fail."""
    if state is None or state.local or not state.failed_here:
        return None
    return state


def settle(state: FlowState | None = None) -> bool:
    """At the end of a request or task: record this process's failure of the flow (default:
    the current one).

    Emits the ``dashfrog.flow.end`` event (status ``failed``, the downstream error) unless the
    flow already ended here (``flow.fail()`` / ``flow.end()`` did it). True if it did.
    """
    with _guard:
        return _settle(state)
    return False


def _settle(state: FlowState | None) -> bool:
    state = _failed_here(flow_state() if state is None else state)
    if state is None or state.ended:
        return False
    final = end_flow(state, c.FAILED)
    here = trace.get_current_span().get_span_context()
    records.flow_ended(state, final, time_ns(), here.trace_id, here.span_id)
    return True


def response_header() -> str | None:
    """The ``dashfrog-flow-outcome`` value for the current flow, if it failed in this process.

    Only a flow joined from the caller's (trusted) baggage can have failed here: a flow the
    server started itself is local, and untrusted baggage never becomes a flow.
    """
    with _guard:
        return _response_header()
    return None


def _response_header() -> str | None:
    state = _failed_here(flow_state())
    if state is None:
        return None
    attrs = error_attributes(state.error) if state.error is not None else {}
    members = [
        (c.FLOW_ID, state.info.id),
        (c.FLOW_STATUS, c.FAILED),
        (c.ERROR_TYPE, attrs.get(c.ERROR_TYPE, "")),
        (c.ERROR_MESSAGE, attrs.get(c.ERROR_MESSAGE, "a step failed")[:MAX_MESSAGE]),
    ]
    parts = [encode_member(k, v) for k, v in members]
    key = _key()
    if key is not None:
        parts.append(encode_member(c.BAGGAGE_SIGNATURE, sign(members, key)))
    return ",".join(parts)


def on_response(url: str, value: str | None) -> bool:
    """Client side: apply a response's ``dashfrog-flow-outcome`` to the current flow.

    True if it marked the flow failed. Ignored (and counted) unless it comes from a host the
    flow is sent to, names the current flow, and, when a key is set, carries a signature that
    passes the checks incoming baggage passes (canonical form, MAC, age).
    """
    with _guard:
        return _on_response(url, value)
    return False


def _on_response(url: str, value: str | None) -> bool:
    if not value:
        return False
    state = flow_state()
    if state is None:
        return False
    cfg = installed_config()
    patterns = cfg.propagate_to if cfg is not None else (INTERNAL,)
    parsed = _members(value)
    members = {name: val for name, val, _ in parsed}
    if (
        members.get(c.FLOW_ID) != state.info.id
        or members.get(c.FLOW_STATUS) != c.FAILED
        or not host_allowed(host_of(url), patterns)
    ):
        diagnostics.count("outcome.rejected")
        return False
    if cfg is not None and cfg.propagation_key is not None:
        verifier = DashfrogBaggagePropagator(
            patterns, cfg.propagation_key, cfg.propagation_max_age_s
        )
        refusal = verifier._refusal(parsed, members)
        if refusal is not None:
            diagnostics.report(
                "outcome.rejected",
                "dashfrog_sdk: a %s response header that %s was ignored "
                "(DASHFROG_PROPAGATION_KEY is set)",
                HEADER,
                refusal[1],
            )
            return False
    fail_flow(
        state,
        DownstreamFailure(
            members.get(c.ERROR_TYPE) or "DownstreamFailure",
            members.get(c.ERROR_MESSAGE) or "a step failed downstream",
        ),
    )
    return True
