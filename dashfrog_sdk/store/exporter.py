"""OpenTelemetry exporters that feed the local SQLite flow store.

``build_processors(path, max_age_s=..., max_flows=...)`` returns a ``BatchSpanProcessor`` and a
``BatchLogRecordProcessor`` around a span exporter and a log record exporter that share one
:class:`~dashfrog_sdk.store.writer.StoreWriter`: conversion and SQLite writes happen on the batch
processors' background threads, never on the thread that ends a span or emits an event.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from dashfrog_sdk.store.convert import Batch, add_log_record, add_span
from dashfrog_sdk.store.writer import StoreWriter

T = TypeVar("T")

# The local store is read by people watching `dashfrog tail`: flush faster than the OTLP default.
SCHEDULE_DELAY_MS = 500
MAX_EXPORT_BATCH = 512
MAX_QUEUE = 8192


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
    path: str, *, max_age_s: float | None, max_flows: int | None
) -> tuple[SpanProcessor, LogRecordProcessor]:
    """Batch processors that write flows, steps, events and flow logs to the store at ``path``.

    ``max_age_s`` and ``max_flows`` bound the store (``None``: no bound); they are applied on the
    writer thread every minute and every couple of thousand flows written. Never raises for a
    bad path: the exporters report one warning and return FAILURE.
    """
    span_exporter, log_exporter = build_exporters(path, max_age_s=max_age_s, max_flows=max_flows)
    span_processor = BatchSpanProcessor(
        span_exporter,
        max_queue_size=MAX_QUEUE,
        schedule_delay_millis=SCHEDULE_DELAY_MS,
        max_export_batch_size=MAX_EXPORT_BATCH,
    )
    log_processor = BatchLogRecordProcessor(
        log_exporter,
        schedule_delay_millis=SCHEDULE_DELAY_MS,
        max_export_batch_size=MAX_EXPORT_BATCH,
        max_queue_size=MAX_QUEUE,
    )
    return span_processor, log_processor
