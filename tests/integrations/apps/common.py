"""What the services under test report back: the flow they see, as JSON-able data."""

from __future__ import annotations

from typing import Any

from opentelemetry import baggage, trace

from dashfrog_sdk import flow


def seen(raw_baggage: str | None) -> dict[str, Any]:
    """The current flow, trace and span, and the raw baggage header that arrived."""
    info = flow.current()
    here = trace.get_current_span().get_span_context()
    return {
        "flow": None
        if info is None
        else {"id": info.id, "name": info.name, "tenant": info.tenant, "labels": dict(info.labels)},
        "baggage": raw_baggage,
        # every dashfrog member in the context, however it got there (any propagator)
        "dashfrog": {k: str(v) for k, v in baggage.get_all().items() if k.startswith("dashfrog.")},
        "trace_id": format(here.trace_id, "032x"),
        "span_id": format(here.span_id, "016x"),
    }
