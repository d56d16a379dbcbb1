"""Handing lifecycle log records to an SDK `Logger` cheaply (ARCHITECTURE.md, "Hot path").

`Logger.emit(api_record)` wraps the record in an SDK `ReadWriteLogRecord`, whose
`__post_init__` re-cleans every attribute one by one: more than half the cost of an emit. Our
event attributes are already clean (validated by dashfrog_sdk.validation, or our own strings and
numbers), and `Logger.emit` forwards a `ReadWriteLogRecord` it is given unchanged. So, when the
logger is an SDK logger with no attribute value-length limit and the record fits under the count
limit, we build that record ourselves with the values written straight into its
`BoundedAttributes` (as `_spans.stamp` does for spans). Anything else - another SDK, limits that
would change values - takes the public path. `tests/flows/test_spans.py` checks that both paths
deliver the same record to the processors.

This runs on the lifecycle dispatcher thread, not the caller's; it matters because that thread
shares the GIL with the application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry._logs import Logger, LogRecord
from opentelemetry.attributes import BoundedAttributes

from dashfrog_sdk._otel import PUBLIC_ONLY


def emitter(logger: Logger) -> Callable[[LogRecord], None]:
    """A function emitting an API `LogRecord` whose `attributes` is a dict of clean values."""
    emit = logger.emit
    if PUBLIC_ONLY:
        return emit
    try:
        from opentelemetry.sdk._logs import ReadWriteLogRecord

        limits = logger._log_record_limits  # type: ignore[attr-defined]
        maxlen: int | None = limits.max_log_record_attributes
        logger._resource, logger._instrumentation_scope  # type: ignore[attr-defined]  # noqa: B018
        fields = set(getattr(ReadWriteLogRecord, "__dataclass_fields__", ()))
        if limits.max_log_record_attribute_length is not None or fields != {
            "log_record",
            "resource",
            "instrumentation_scope",
            "limits",
        }:
            return emit
    except (ImportError, AttributeError):  # not the SDK we know: the public way
        return emit

    def fast(record: LogRecord) -> None:
        attributes: Any = record.attributes
        if not isinstance(attributes, dict) or (maxlen is not None and len(attributes) > maxlen):
            emit(record)
            return
        bounded = BoundedAttributes(maxlen, None, immutable=False, extended_attributes=True)
        bounded._dict.update(attributes)
        record.attributes = bounded
        writable = object.__new__(ReadWriteLogRecord)
        writable.log_record = record
        writable.resource = logger._resource  # type: ignore[attr-defined]
        writable.instrumentation_scope = logger._instrumentation_scope  # type: ignore[attr-defined]
        writable.limits = limits
        emit(writable)  # type: ignore[call-overload]  # an SDK record: emit() passes it on as-is

    return fast


def needed_by(provider: Any, fanout: Any) -> Callable[[], bool]:
    """Whether anything wants dashfrog's lifecycle log records from `provider` (asked once a
    dispatcher batch, so a processor added later is seen): False only when the provider's one
    processor is dashfrog's fan-out and every child of it takes the events from the bus (the
    flow store, `store.processor.StoreEventSink`). Reads the SDK's private list of processors;
    without it (another SDK, DASHFROG_OTEL_PUBLIC_ONLY) the records are always built."""

    def always() -> bool:
        return True

    if PUBLIC_ONLY:
        return always
    multi: Any = getattr(provider, "_multi_log_record_processor", None)
    if not isinstance(getattr(multi, "_log_record_processors", None), tuple):
        return always

    def needed() -> bool:
        processors = multi._log_record_processors
        if len(processors) != 1 or processors[0] is not fanout:
            return True
        return not all(getattr(c, "takes_events_from_bus", False) for c in fanout.children)

    return needed
