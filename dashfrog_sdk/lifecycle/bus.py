"""The lifecycle dispatcher: records queued by the calling thread, delivered to sinks later.

The calling thread only appends a record's fields to a deque (`lifecycle.records`). A background
thread drains it in order, views each record as a `Lifecycle`, and hands each batch to the
sinks (`dashfrog_sdk.sinks`: OTel log records, console, flow metrics). Building log records off
the calling thread is what keeps a flow within budget (ARCHITECTURE.md, "Hot path").

The queue is bounded (`records.MAX_QUEUE` events). A thread that finds it full waits, up to
`wait_s` (DASHFROG_QUEUE_FULL_WAIT), for the dispatcher to take the next chunk: backpressure,
the same as the export pipelines' (exporting.pipeline). Never on dashfrog's own threads (the
dispatcher, a thread inside flush() or shutdown(): `dashfrog_sdk._threads`), on a thread
running an asyncio event loop, on one draining (a sampler queues records while draining), nor
while stopped; after a wait that ran out, none until the queue is below half its bound. The
dispatcher never waits in the export pipelines either (it is one of dashfrog's threads): so
an outage or a slow collector never makes this queue wait behind it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Protocol

from dashfrog_sdk import _fork, _threads, diagnostics
from dashfrog_sdk.lifecycle import records
from dashfrog_sdk.lifecycle.records import WIDTH as _WIDTH
from dashfrog_sdk.lifecycle.records import Lifecycle

Sink = Callable[[Sequence[Lifecycle]], None]


class Outlet(Protocol):  # an export pipeline (exporting.pipeline.Pipeline)
    def headroom(self) -> int | None: ...

    def wait_room(self, deadline: float | None = None) -> bool: ...


_NEVER = object()
_INTERVAL_S = 0.1


class _Bus:
    def __init__(self) -> None:
        self.sinks: tuple[Sink, ...] = ()
        # Called before each drain: they may queue records (step.sample_progress).
        self.samplers: tuple[Callable[[], None], ...] = ()
        self._lock = threading.Lock()  # serialises draining: events reach sinks in order
        self._draining: int | None = None  # the thread draining now
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.wait_s = 0.0  # backpressure: how long a full queue may make a thread wait
        # The logs pipelines the sinks emit into. The dispatcher never waits in them (it holds
        # `_lock`); it takes from this queue no more events than they have room for, and waits
        # for room between drains, holding no lock: the queue then fills, and the threads that
        # produce wait for it here (backpressure reaches them through this queue).
        self.outlets: tuple[Outlet, ...] = ()
        self._held_back: Outlet | None = None
        self._new_room()
        records.pending.wait_for_room = self.wait_for_room

    def _new_room(self) -> None:
        self._room = threading.Condition(threading.RLock())  # reentrant: see Pipeline._room
        self._waiters = 0
        self._stalled = False  # a wait ran out: none until the queue is below half its bound
        self._no_wait = False  # shutdown() stopped the waits

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(
            target=_threads.target(self._run), name="dashfrog-events", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(_INTERVAL_S)
            self._wake.clear()
            self.drain()
            outlet, self._held_back = self._held_back, None
            if outlet is not None and not self._stop:
                outlet.wait_room()  # no lock held; the next drain goes on either way

    def drain_within(self, deadline: float) -> None:
        """`drain`, taking no more than the outlets have room for and waiting for room until
        `deadline` (flush(timeout): a full logs queue must not drop what a flush delivers)."""
        while True:
            self.drain(limited=True)
            outlet, self._held_back = self._held_back, None
            if outlet is None or time.monotonic() >= deadline:
                return
            outlet.wait_room(deadline)

    def drain(self, *, limited: bool = False) -> None:
        if self._draining == threading.get_ident():
            # A sink flushed a provider (which drains first: processors.drain_before_flush)
            # from inside this drain: the events are being delivered already; the lock is not
            # reentrant, so waiting for it here would deadlock.
            return
        with self._lock:
            try:
                self._draining = threading.get_ident()
                for sample in self.samplers:
                    try:
                        sample()
                    except Exception as exc:  # never the dispatcher's end
                        diagnostics.internal_error("events.sampler_errors", exc, "a sampler")
                self._drain(limited)
            finally:
                self._draining = None

    def _drain(self, limited: bool = False) -> None:
        make = Lifecycle._make
        queue = records.pending.fields
        fields = iter(queue.popleft, _NEVER)  # (None is a field value: not a sentinel)
        dispatcher = self._thread is not None and self._thread.ident == threading.get_ident()
        limited = limited or dispatcher
        while count := min(len(queue) // _WIDTH, 2048):
            if limited and self.outlets:
                count = self._within_headroom(count)
                if not count:
                    return
            # Taken in one C-level call: no Python code (so no signal handler raising
            # SystemExit or KeyboardInterrupt on this thread) can run between two pops and
            # leave a partial event at the head of the queue.
            taken = list(islice(fields, count * _WIDTH))
            if self._stalled and len(queue) < records.MAX_FIELDS // 2:
                self._stalled = False
            if self._waiters:
                with self._room:  # (see Pipeline._release_waiters for why this read is safe)
                    self._room.notify_all()
            batch = [make(taken[i : i + _WIDTH]) for i in range(0, len(taken), _WIDTH)]
            for sink in self.sinks:
                try:
                    sink(batch)
                except Exception as exc:  # a sink must never kill the dispatcher
                    diagnostics.internal_error("events.sink_errors", exc, "an event sink")

    def _within_headroom(self, count: int) -> int:
        """At most as many events as the fullest outlet has room for (each event becomes at
        most one log record); 0 (and that outlet kept to wait on) when one is full."""
        for outlet in self.outlets:
            room = outlet.headroom()
            if room is not None and room < count:
                count = room
                if not room:
                    self._held_back = outlet
                    return 0
        return count

    def wait_for_room(self) -> bool:
        """A thread found the queue full: wait for the dispatcher to take a chunk (see the
        module's docstring). True if there is room now."""
        thread, me = self._thread, threading.get_ident()
        if (
            self.wait_s <= 0
            or self._stalled
            or self._stop
            or self._no_wait
            or thread is None
            or thread.ident == me
            or self._draining == me
            or not _threads.may_wait()
        ):
            return False
        start = time.monotonic()
        deadline = start + self.wait_s
        room = self._room
        try:
            with room:
                self._waiters += 1
                try:
                    while len(records.pending.fields) >= records.MAX_FIELDS:
                        if self._stalled or self._stop or self._no_wait:
                            return False
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            self._stalled = True
                            room.notify_all()  # the others waiting drop now too
                            diagnostics.count("events.wait_expired")
                            return False
                        self._wake.set()
                        room.wait(remaining)
                finally:
                    self._waiters -= 1
        finally:
            diagnostics.count("events.waited_ms", int((time.monotonic() - start) * 1000))
        diagnostics.count("events.waited")
        return True

    def stop_waiting(self, on: bool = True) -> None:
        """No thread waits for room any more, and those waiting drop now (flush and shutdown
        keep to their timeouts); `on=False` undoes it."""
        with self._room:
            self._no_wait = on
            self._room.notify_all()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop = True
        self._wake.set()
        with self._room:
            self._room.notify_all()  # waiting threads drop now
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, timeout_s))
        self._thread = None
        self.drain()

    def after_fork(self) -> None:
        # The parent's queue belongs to the parent: the child starts empty, with its own thread
        # and a fresh lock (the parent's may have been held by its dispatcher at fork time).
        records.pending.fields = deque()
        self._lock = threading.Lock()
        self._new_room()
        self._draining = None
        self._held_back = None
        self._wake = threading.Event()
        if self._thread is not None:
            self._thread = None
            self.start()


_bus = _Bus()
_fork.in_child(_bus.after_fork)


def add_sink(sink: Sink) -> None:
    """Register `sink` to receive every lifecycle batch (idempotent)."""
    if sink not in _bus.sinks:
        _bus.sinks = (*_bus.sinks, sink)


def add_sampler(sampler: Callable[[], None]) -> None:
    """Call `sampler` before each drain, on the draining thread (idempotent)."""
    if sampler not in _bus.samplers:
        _bus.samplers = (*_bus.samplers, sampler)


def remove_sink(sink: Sink) -> None:
    _bus.sinks = tuple(s for s in _bus.sinks if s is not sink)


def start(wait_s: float | None = None) -> None:
    """Start the dispatcher thread; `wait_s`: the backpressure bound (DASHFROG_QUEUE_FULL_WAIT)."""
    if wait_s is not None:
        _bus.wait_s = wait_s
    _bus.start()


def flush(deadline: float | None = None) -> None:
    """Deliver everything recorded so far to the sinks, on the calling thread; with a
    `deadline`, waiting for room in a full logs queue until then (see `_Bus.drain_within`)."""
    if deadline is None:
        _bus.drain()
    else:
        _bus.drain_within(deadline)


def set_outlets(outlets: Sequence[Outlet]) -> None:
    """The logs pipelines the sinks emit into (see `_Bus.outlets`)."""
    _bus.outlets = tuple(outlets)


def stop_waiting(on: bool = True) -> None:
    """Threads stop waiting for room in the full queue (flush, shutdown); `on=False` undoes it."""
    _bus.stop_waiting(on)


def stop() -> None:
    _bus.stop()
