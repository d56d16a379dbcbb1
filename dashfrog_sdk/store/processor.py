"""The store's span and log processors: one queue, one writer thread, no silent loss.

The stock batch processors drop whatever does not fit their queue (8,192 items here), each
signal on its own: a burst of 20,000 flows kept 9,885 of them, and a third of those showed as
`running` because their start event was kept while their span (the end) was dropped. This module
replaces them for the store:

* Spans and log records go into **one** queue, in the order they happened, so a flow's start
  event and its span usually land in the same write, where the writer folds them into one row
  (see ``writer._coalesce``): several times fewer SQLite statements per flow.
* The writer thread drains as much as is waiting (up to ``MAX_BATCH`` records a transaction), so
  it speeds up when it falls behind instead of dropping.
* A write that fails (store locked past the busy timeout, disk full, file deleted) is retried,
  not discarded; the queue holds the records meanwhile.
* The queue is bounded: past ``max_queue`` records, *start* events are skipped first (the span
  that ends a step or flow carries everything a start event says, so nothing is lost once the
  end arrives; counted as ``store.skipped_starts``). Past twice ``max_queue``, records are
  dropped: each is counted (``store.dropped``, one warning), and its flow is dropped *whole*
  (``store.flows_dropped``): the writer deletes what it had stored of it and ignores its later
  records, so a flow is never shown as running because its end was dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from dashfrog_sdk import _fork, _threads, diagnostics
from dashfrog_sdk import conventions as c
from dashfrog_sdk.lifecycle.records import Lifecycle
from dashfrog_sdk.sinks.otel_logs import ended_in
from dashfrog_sdk.store.convert import Batch, add_lifecycle, add_log_record, add_span
from dashfrog_sdk.store.writer import StoreWriter

_log = logging.getLogger("dashfrog_sdk.store")

# The local store is read by people watching `dashfrog tail`: write at least twice a second.
SCHEDULE_DELAY_S = 0.5
# One transaction holds the store's write lock: keep it well under other writers' busy timeout.
MAX_BATCH = 8_192
# Records (spans + log records, ~2 KB each while queued) before start events are skipped; twice
# this before anything is dropped. 65,536 records are ~8,000 flows of 3 steps in flight.
MAX_QUEUE = 65_536
RETRY_DELAY_S = 1.0
# Flow ids whose records are being dropped; bounded so a long outage cannot grow it forever.
MAX_LOST_IDS = 100_000

DROPPED = "store.dropped"
FLOWS_DROPPED = "store.flows_dropped"
SKIPPED_STARTS = "store.skipped_starts"
INTERNAL_ERRORS = "store.internal_errors"

_STARTS = frozenset({c.EVENT_FLOW_START, c.EVENT_STEP_START})


class _Flush:
    """A marker in the queue: set once the writer has written everything before it, or failed
    to (then `ok` is False, and what came before stays queued for the retry)."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class StoreQueue:
    """The queue and the writer thread shared by the store's span and log processors."""

    def __init__(self, writer: StoreWriter, *, max_queue: int = MAX_QUEUE) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be a positive number of records, got {max_queue}")
        self.writer = writer
        self.max_queue = max_queue
        # Set by StoreEventSink: lifecycle records come from the bus, not as OTel log records.
        self.from_bus = False
        self.event_service: str | None = None  # their service.name (the logger provider's)
        self._reset()
        _fork.method_in_child(self._after_fork)

    def _reset(self) -> None:
        self.queue: deque[Any] = deque()
        self.lost: dict[str, None] = {}  # flow ids dropped whole (insertion-ordered set)
        self.to_forget: deque[str] = deque()  # ... whose stored rows are still to be deleted
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def _after_fork(self) -> None:
        # The parent's queue, thread and SQLite connection are the parent's (a connection must
        # not cross fork): the child starts empty and opens its own on its first write.
        self.writer.after_fork()
        self._reset()

    # -- the calling thread ----------------------------------------------------------------
    def put(self, item: Any, start: bool) -> None:
        """Queue a span or log record; `start`: it is a start event (skipped first when full)."""
        queue = self.queue
        if len(queue) < self.max_queue:
            queue.append(item)
        else:
            self._full(item, start)
        if self._thread is None:
            self._start_thread()

    def _full(self, item: Any, start: bool) -> None:
        if start:
            diagnostics.count(SKIPPED_STARTS)
            return
        if len(self.queue) < 2 * self.max_queue:
            self.queue.append(item)
            return
        flow_id = _flow_id(item)
        diagnostics.report(
            DROPPED,
            "dashfrog flow store %s: the writer is %d records behind; dropping flows (each "
            "whole, never an end without its start) until it catches up. Counted in "
            "dashfrog_sdk.stats()['diagnostics']['%s']",
            self.writer.path,
            len(self.queue),
            FLOWS_DROPPED,
        )
        if flow_id is not None and flow_id not in self.lost:
            diagnostics.count(FLOWS_DROPPED)
            self.lost[flow_id] = None
            self.to_forget.append(flow_id)
            if len(self.lost) > MAX_LOST_IDS:
                self.lost.pop(next(iter(self.lost)))

    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=_threads.target(self._run), name="dashfrog-store", daemon=True
                )
                self._thread.start()

    # -- the writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopped or self.queue:
            # An unexpected error must not end the thread (every later flow would be lost):
            # reported once, then the loop goes on.
            with diagnostics.capture_internal_errors(INTERNAL_ERRORS, "the store writer thread"):
                self._loop()
                return

    def _loop(self) -> None:
        pending: list[Any] = []
        while True:
            if not pending:
                self._wake.wait(SCHEDULE_DELAY_S)
                self._wake.clear()
            if self._stopped and not self.queue and not pending:
                return
            markers: list[_Flush] = []
            queue = self.queue
            while queue and len(pending) < MAX_BATCH:
                item = queue.popleft()
                if isinstance(item, _Flush):
                    markers.append(item)
                    if pending:
                        break  # write what came before the marker, then release it
                else:
                    pending.append(item)
            ok = not pending or self._write(pending)
            # A flush waiting for this write learns at once whether it happened.
            for marker in markers:
                marker.ok = ok
                marker.done.set()
            if ok:
                pending = []
            elif self.writer.retryable:
                # Kept for a retry (locked, full, replaced store); unless stopping, wait first.
                if self._stopped:
                    return
                self._wake.wait(RETRY_DELAY_S)
                self._wake.clear()
            else:  # a store no retry can fix (corrupt, from a newer dashfrog): counted
                diagnostics.count(DROPPED, len(pending))
                pending = []

    def _write(self, items: list[Any]) -> bool:
        batch = Batch()
        lost = self.lost
        for item in items:
            try:
                if isinstance(item, ReadableSpan):
                    add_span(batch, item)
                elif isinstance(item, Lifecycle):
                    add_lifecycle(batch, item, self.event_service)
                else:
                    add_log_record(batch, item)
            except Exception as exc:  # a record we cannot read: skipped, the others written
                diagnostics.internal_error(INTERNAL_ERRORS, exc, "the store's record conversion")
        if lost:
            batch.drop_flows(lost)
        forget: list[str] = []
        while self.to_forget:  # popleft, not a swap: producers may append meanwhile
            forget.append(self.to_forget.popleft())
        if self.writer.write(batch, forget=forget):
            return True
        self.to_forget.extendleft(reversed(forget))
        return False

    # -- flush and shutdown ----------------------------------------------------------------
    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued before the call is written (False at the timeout)."""
        if (self._thread is None or self._stopped) and not self.queue:
            return True
        marker = _Flush()
        self.queue.append(marker)
        self._start_thread()
        self._wake.set()
        return marker.done.wait(max(0.0, timeout_s)) and marker.ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._stopped:  # the span and the log processor both shut the queue down
            return
        deadline = time.monotonic() + timeout_s
        self.flush(timeout_s)
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.writer.close()


def _flow_id(item: Any) -> str | None:
    if isinstance(item, ReadableSpan):
        attrs = item.attributes
    elif isinstance(item, Lifecycle):
        attrs = item.flow
    else:
        attrs = item.log_record.attributes
    value = attrs.get(c.FLOW_ID) if attrs else None
    return None if value is None else str(value)


class StoreSpanProcessor(SpanProcessor):
    """Queues every ended span for the store's writer thread (which skips non-flow spans)."""

    def __init__(self, queue: StoreQueue) -> None:
        self.queue = queue

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self.queue.put(span, False)

    def shutdown(self) -> None:
        self.queue.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.queue.flush(timeout_millis / 1000)


class StoreLogProcessor(LogRecordProcessor):
    """Queues dashfrog's events and the log records captured inside flows for the store."""

    def __init__(self, queue: StoreQueue) -> None:
        self.queue = queue

    @property
    def takes_events_from_bus(self) -> bool:
        """Whether dashfrog's own lifecycle log records are of no use to this processor."""
        return self.queue.from_bus

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        event = log_record.log_record.event_name
        if event is not None and self.queue.from_bus and event in c.OTEL_EVENTS:
            scope = log_record.instrumentation_scope
            if scope is not None and scope.name == c.SCOPE_NAME:
                return  # dashfrog's own event: the store has it from the bus already
        # The record itself, not a copy: the writer only reads it (the stock processor copies it
        # to cut the reference to its context; ours is written and released within seconds).
        self.queue.put(log_record, event in _STARTS)

    def emit(self, log_record: ReadWriteLogRecord) -> None:  # older SDK name
        self.on_emit(log_record)

    def shutdown(self) -> None:
        self.queue.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.queue.flush(timeout_millis / 1000)


class StoreEventSink:
    """Lifecycle sink: dashfrog's events go to the store as the bus delivers them.

    Hot path (ARCHITECTURE.md): the store used to read its events back from the OTel log
    records the dispatcher built for it, and decode them; it now takes the same records off
    the bus, skipping the same start events as the OTel emitter (`sinks.otel_logs.ended_in`),
    and the emitter builds no log record when nothing else wants one. It bypasses
    `OtelEventEmitter`, `Logger.emit` and `StoreLogProcessor.on_emit` for dashfrog's events;
    `tests/store/test_events_from_bus.py` checks that both paths give identical store rows.
    """

    def __init__(self, queue: StoreQueue, service: str | None) -> None:
        self.queue = queue
        queue.event_service = service
        queue.from_bus = True

    def __call__(self, batch: Sequence[Lifecycle]) -> None:
        ended = ended_in(batch)
        put = self.queue.put
        for event in batch:
            kind = event.kind
            if kind in c.OTEL_EVENTS:
                start = kind in _STARTS
                # As sinks.otel_logs.OtelEventEmitter: no start, and no progress (its span
                # carries the last value), for work that ended in this batch.
                if event.span_id in ended and (start or kind == c.EVENT_STEP_PROGRESS):
                    continue
                put(event, start)
