"""OpenTelemetry processors and exporters that feed the local SQLite flow store.

``build_processors(path, max_age_s=..., max_flows=...)`` returns a span processor and a log
record processor that share one queue and one writer thread (:mod:`dashfrog_sdk.store.processor`):
conversion and SQLite writes happen there, never on the thread that ends a span or emits an
event. ``build_exporters`` gives plain exporters around one writer, for an application that runs
its own batch processors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from dashfrog_sdk.store.convert import Batch, add_log_record, add_span
from dashfrog_sdk.store.processor import (
    MAX_QUEUE,
    StoreLogProcessor,
    StoreQueue,
    StoreSpanProcessor,
)
from dashfrog_sdk.store.writer import StoreWriter

T = TypeVar("T")


def _write(writer: StoreWriter, items: Sequence[T], add: Callable[[Batch, T], None]) -> bool:
    """Convert `items` into one batch of rows and write it; False if either step failed."""
    batch = Batch()
    try:
        for item in items:
            add(batch, item)
    except Exception as exc:  # a malformed span or record must not kill the export thread
        writer.report_failure(exc)
        return False
    return writer.write(batch)


class FlowStoreSpanExporter(SpanExporter):
    """Writes the spans of flows (flow, step and every span carrying a flow id) to the store."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = _write(self.writer, spans, add_span)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class FlowStoreLogExporter(LogRecordExporter):
    """Writes dashfrog events and the log records captured inside flows to the store."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = _write(self.writer, batch, add_log_record)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def build_exporters(
    path: str, *, max_age_s: float | None = None, max_flows: int | None = None
) -> tuple[FlowStoreSpanExporter, FlowStoreLogExporter]:
    """The two store exporters around one shared writer (for callers with their own processors)."""
    writer = StoreWriter(path, max_age_s=max_age_s, max_flows=max_flows)
    # A directory that cannot be created is reported by the first write (one warning).
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return FlowStoreSpanExporter(writer), FlowStoreLogExporter(writer)


def build_processors(
    path: str,
    *,
    max_age_s: float | None,
    max_flows: int | None,
    max_queue: int = MAX_QUEUE,
) -> tuple[StoreSpanProcessor, StoreLogProcessor]:
    """The span and log processors that write flows, steps, events and flow logs to ``path``.

    ``max_age_s`` and ``max_flows`` bound the store (``None``: no bound); they are applied on the
    writer thread every minute and every couple of thousand flows written. ``max_queue`` bounds
    the records waiting for the writer (see :mod:`dashfrog_sdk.store.processor`). Never raises
    for a bad path: the writer reports one warning and retries.
    """
    writer = StoreWriter(path, max_age_s=max_age_s, max_flows=max_flows)
    queue = StoreQueue(writer, max_queue=max_queue)
    return StoreSpanProcessor(queue), StoreLogProcessor(queue)
