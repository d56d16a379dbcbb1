"""Putting pre-validated attributes on SDK spans cheaply (ARCHITECTURE.md, "Hot path").

A flow's attributes are validated once at `flow.start()`; running them through the SDK's
per-attribute cleaning again for every span of the flow costs more than the rest of a step.
When the span is a fresh SDK span with no attribute limits that could change the values (no
value-length limit, room under the count limit), the already-clean values are written in one
dict update; otherwise `set_attributes` does the usual work. `tests/flows/test_spans.py` checks
that both paths give the same attributes.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import Span

from dashfrog_sdk._otel import PUBLIC_ONLY
from dashfrog_sdk.text import clean, has_lone_surrogate


def writable(span: Span, count: int) -> dict[str, Any] | None:
    """The dict behind `span`'s attributes, when `count` validated values may go straight in."""
    if PUBLIC_ONLY:
        return None
    try:
        bounded = span._attributes  # type: ignore[attr-defined]
        # The end time too: in older SDKs an ended span's attribute dict stays writable (the
        # public setter checks the end time), seen when the tests ran on opentelemetry-sdk 1.39.
        if (
            span._end_time is None  # type: ignore[attr-defined]
            and bounded.max_value_len is None
            and not bounded._immutable
            and (bounded.maxlen is None or len(bounded._dict) + count <= bounded.maxlen)
        ):
            return bounded._dict  # type: ignore[no-any-return]
    except AttributeError:  # not an SDK span (non-recording, another SDK): the public way
        pass
    return None


def stamp(span: Span, *parts: Mapping[str, Any]) -> None:
    """Set the attributes in `parts` (validated by dashfrog_sdk.validation) on `span`."""
    count = 0
    for part in parts:
        count += len(part)
    values = writable(span, count)
    for part in parts:
        if values is not None:
            values.update(part)
        else:
            span.set_attributes(part)


def stamp_one(span: Span, key: str, value: Any) -> None:
    """Set one validated attribute on `span`."""
    values = writable(span, 1)
    if values is not None:
        values[key] = value
    else:
        span.set_attribute(key, value)


def record_exception(span: Span, exc: BaseException) -> None:
    """`span.record_exception(exc)`, even for an exception whose `__str__` raises, and with
    its message and stack trace cleaned when they hold a lone surrogate (dashfrog_sdk.text:
    the OTLP encoder would refuse the whole batch of spans)."""
    try:
        message = str(exc)
        if not has_lone_surrogate(message):
            span.record_exception(exc)
            return
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        span.record_exception(
            exc,
            attributes={"exception.message": clean(message), "exception.stacktrace": clean(stack)},
        )
    except Exception:
        span.add_event(
            "exception",
            {"exception.type": type(exc).__qualname__, "exception.message": "<str() failed>"},
        )
