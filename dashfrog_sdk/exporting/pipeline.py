"""A batch processor that survives collector outages: bounded backlog, retries, exact counts.

Why not the SDK's BatchSpanProcessor / BatchLogRecordProcessor: when an export fails (the
collector is restarting), they drop the whole batch and move on, so every outage loses data;
their queue drops silently (a log line per item); and they cannot say how much was lost. This
one keeps a failed batch and retries it with backoff until the collector answers, holds what
arrives meanwhile in a queue bounded by ``max_queue`` items, drops (and counts) what exceeds
the bound, and warns once per outage.

The calling thread only appends to a deque (``put``): no lock, no I/O, whatever the collector
does. Everything else runs on one daemon thread per pipeline.

Backpressure: a queue that fills up while the collector accepts data is an export thread that
got too little of the GIL (many application threads producing flat out), not an outage. Then
``put`` waits, up to ``wait_s`` (``DASHFROG_QUEUE_FULL_WAIT``), for the export thread to take
the next batch, instead of dropping. It waits only while the pipeline is *armed*:

* not before a first export got through, nor after an export failed (the collector down or
  refusing: an outage must not slow the application; the bound holds memory and drops are
  counted as before), until an export succeeds in less than the bound with fewer than a batch
  queued: while the backlog built during the outage drains, the queue stays full and nothing
  waits for it;
* not after a wait ran out (the collector is slow: each export takes longer than the bound),
  until an export succeeds in less than the bound with the queue below half its bound: a slow
  collector costs each thread one wait, not one per batch. The threads waiting then drop too;
* never on dashfrog's own threads, nor on a thread running an asyncio event loop
  (``dashfrog_sdk._threads``), nor once ``flush()``/``shutdown()`` stopped the waits.

``stats()`` counts the items that waited (``waited``), the waits that ran out
(``wait_expired``) and the time spent waiting (``waited_s``).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlparse

from opentelemetry.context import attach, detach, get_current, set_value

from dashfrog_sdk import _fork, _threads, diagnostics
from dashfrog_sdk._otel.keys import SUPPRESS_INSTRUMENTATION_KEY
from dashfrog_sdk.exporting.counts import SignalCounters, outage

logger = logging.getLogger("dashfrog_sdk")

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

# A batch the collector *answers* but refuses (bad data, auth, overload) is retried this many
# times, then dropped: retrying it forever would block everything behind it. A collector that
# does not answer at all (down, restarting) is an outage: that batch is retried without limit
# while the queue bound protects memory.
MAX_REFUSED_ATTEMPTS = 5
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 5.0
POLL_S = 0.25  # while the collector is unreachable, how often to check it is back
# "The queue is full" is one warning per episode of drops: a drop warns again only after the
# backlog was delivered and this long passed without a drop (a queue too small for its bursts
# overflows on every burst: one line, not one per burst; the drops are counted in stats()).
EPISODE_QUIET_S = 30.0
NOUNS = {"traces": "spans", "logs": "log records", "metrics": "metric points"}


class Exporter(Protocol[T_contra]):  # the OTel span and log record exporters
    def export(self, batch: Sequence[T_contra], /) -> Any: ...

    def shutdown(self) -> Any: ...


class _Quiet(logging.Filter):
    """Silence the OTLP exporters' per-batch error lines while dashfrog is the caller.

    During an outage they log one or two lines per batch and per retry; dashfrog warns once per
    outage instead. Only records logged on a dashfrog export thread are affected (the
    application's own exporters keep their logs); their text is kept as the outage's reason.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(self.local, "on", False):
            return True
        if record.levelno >= logging.WARNING and not getattr(self.local, "reason", ""):
            self.local.reason = record.getMessage()  # the first one says most ("refused")
        logger.debug("dashfrog_sdk: exporter said: %s", record.getMessage())
        return False


quiet = _Quiet()
for _name in (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.common.http",
):
    logging.getLogger(_name).addFilter(quiet)


def call_quietly(fn: Callable[[], Any]) -> tuple[bool, str]:
    """Run an export call with the exporters' logs silenced and instrumentation suppressed.

    Returns (succeeded, reason for a failure). Never raises.
    """
    key = SUPPRESS_INSTRUMENTATION_KEY
    token = attach(set_value(key, True) if key is not None else get_current())
    quiet.local.on, quiet.local.reason = True, ""
    try:
        result = fn()
        ok = getattr(result, "name", None) == "SUCCESS"
        return ok, "" if ok else quiet.local.reason
    except Exception as exc:  # an exporter bug must not kill the export thread
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        quiet.local.on = False
        detach(token)


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """Does something accept TCP connections at the endpoint? Tells "down" from "refusing"."""
    parsed = urlparse(url)
    default = 443 if parsed.scheme == "https" else (4318 if parsed.path.strip("/") else 4317)
    try:
        with socket.create_connection(
            (parsed.hostname or "localhost", parsed.port or default), timeout_s
        ):
            return True
    except OSError:
        return False


class Pipeline(Generic[T]):
    """Bounded queue + one export thread + retry. `put` is the only hot-path call."""

    def __init__(
        self,
        signal: str,
        make_exporter: Callable[[], Exporter[T]],
        *,
        endpoint: str,
        max_queue: int,
        batch_size: int,
        delay_s: float,
        shutdown_timeout_s: float,
        counters: SignalCounters,
        wait_s: float = 0.0,
    ) -> None:
        self.signal = signal
        self.endpoint = endpoint
        self._make_exporter = make_exporter
        self._exporter = make_exporter()
        self._max_queue = max_queue
        self._batch_size = max(1, batch_size)
        self._delay_s = delay_s
        self._wait_s = wait_s  # backpressure: how long put() may wait for room (0: never)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._counters = counters
        self._orphans: list[Exporter[T]] = []
        self._closed = False
        self._start()
        counters.queued = self.pending
        _fork.method_in_child(self._after_fork)

    def _start(self) -> None:
        self._queue: deque[T] = deque()
        self._held: list[T] = []  # the batch being exported, kept until it is delivered
        self._wake = threading.Event()
        self._done = threading.Condition()  # guards the two counts below; flush() waits on it
        self._taken = 0  # items moved from the queue into a batch
        self._settled = 0  # items of batches exported or dropped
        self._urgent = 0  # pending flush() calls: export partial batches now, skip backoff
        self._stop = False
        self._refused = 0  # attempts of the held batch that the collector refused
        self._failures = 0  # consecutive failures, for the backoff
        # The "queue is full" warning, once per episode (see _drop): whether an export left
        # the queue under `_after_outage` since the last drop, and when that drop was.
        self._drained = False
        self._last_full_drop = float("-inf")
        # put() waits on it for room. Reentrant: a signal handler that emits telemetry on a
        # thread holding it must not deadlock.
        self._room = threading.Condition(threading.RLock())
        self._waiters = 0  # threads waiting in put()
        self._armed = False  # a full queue may wait (see the module's docstring)
        # Disarmed: a fast export with fewer than this many queued arms it again. A batch after
        # an outage (or before the first export), half the bound after a wait that ran out.
        self._rearm_below = self._after_outage = min(self._batch_size, max(1, self._max_queue // 2))
        self._no_wait = False  # flush() or shutdown() stopped the waits
        self.lost_at_exit = 0
        self._unreachable = False  # the last failure was "nothing listens there"
        self._thread = threading.Thread(
            target=_threads.target(self._run), name=f"dashfrog-export-{self.signal}", daemon=True
        )
        self._thread.start()

    def _after_fork(self) -> None:
        # The child starts empty: the parent keeps and exports its own queue. The parent's
        # exporter is kept, not closed: closing it here would shut the sockets the parent shares.
        if self._closed:
            return
        self._orphans.append(self._exporter)
        self._exporter = self._make_exporter()
        self._start()

    # -- calling threads --------------------------------------------------------------------
    def put(self, item: T) -> None:
        queue = self._queue
        if self._closed or (len(queue) >= self._max_queue and not self._wait_for_room()):
            self._drop(1, "closed" if self._closed else "full")
            return
        queue.append(item)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def _wait_for_room(self) -> bool:
        """The queue is full: wait for the export thread to take a batch, if the pipeline is
        armed (see the module's docstring). True if there is room now."""
        if (
            self._wait_s <= 0
            or not self._armed
            or self._no_wait
            or self._closed
            or not _threads.may_wait()
        ):
            return False
        if not self.wait_room():
            return False
        self._counters.add("waited", 1)
        return True

    def _disarm(self, rearm_below: int) -> None:
        """No thread waits from now on, and those waiting drop now, until an export succeeds in
        less than the bound with fewer than `rearm_below` items queued (the stricter of two
        pending conditions holds)."""
        with self._room:
            if self._armed:
                self._rearm_below = rearm_below
            else:
                self._rearm_below = min(self._rearm_below, rearm_below)
            self._armed = False
            self._room.notify_all()

    def headroom(self) -> int | None:
        """For the lifecycle dispatcher, which never waits in put(): how many items fit now,
        if it should hold back what does not (the pipeline is armed); None: no limit (the
        items that do not fit are dropped, as for any thread that may not wait)."""
        if self._wait_s <= 0 or not self._armed or self._no_wait or self._closed:
            return None
        return max(0, self._max_queue - len(self._queue))

    def wait_room(self, deadline: float | None = None) -> bool:
        """Wait for the export thread to take a batch, up to the bound (a wait that runs out
        disarms), or `deadline` if sooner (a flush's; reaching it does not disarm). For put()
        on a full queue, and for the dispatcher that found no headroom (holding no lock of its
        own). True if there is room now."""
        start = time.monotonic()
        bound = start + self._wait_s
        deadline = bound if deadline is None else min(deadline, bound)
        with self._room:
            self._waiters += 1
            try:
                while len(self._queue) >= self._max_queue:
                    if not self._armed or self._no_wait or self._closed:
                        return False
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        if deadline >= bound:
                            self._counters.add("wait_expired", 1)
                            self._disarm(max(1, self._max_queue // 2))
                        return False
                    self._wake.set()
                    self._room.wait(remaining)
            finally:
                self._waiters -= 1
                self._counters.add("waited_s", time.monotonic() - start)
        return True

    def stop_waiting(self) -> None:
        """No put() waits any more, and those waiting drop now (flush() and shutdown(), which
        must keep to their timeouts). `resume_waiting` undoes it."""
        with self._room:
            self._no_wait = True
            self._room.notify_all()

    def resume_waiting(self) -> None:
        self._no_wait = False

    def _release_waiters(self) -> None:
        """Wake the threads waiting in put(): the export thread took a batch. Unlocked read of
        the count first: a waiter counts itself, under the lock, before it looks at the queue's
        length, which the export thread shortened before it looks here; so a waiter it does not
        see has seen the room."""
        if self._waiters:
            with self._room:
                self._room.notify_all()

    def pending(self) -> int:
        return len(self._queue) + len(self._held)

    def kick(self) -> int:
        """Ask for everything queued so far to be exported now; returns the flush target."""
        with self._done:
            self._urgent += 1
            target = self._taken + len(self._queue)
        self._wake.set()
        return target

    def wait(self, target: int, deadline: float) -> bool:
        """Wait until the items counted in `target` are exported or dropped, or `deadline`."""
        try:
            with self._done:
                while self._settled < target and self._queue_or_held():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._done.wait(min(remaining, 0.1))
                return True
        finally:
            with self._done:
                self._urgent -= 1

    def flush(self, timeout_s: float) -> bool:
        if not self._queue_or_held():  # e.g. setup's flush reaching it again via the provider
            return True
        return self.wait(self.kick(), time.monotonic() + timeout_s)

    def shutdown(self, deadline: float | None = None, *, report: bool = True) -> None:
        """Flush until `deadline` (default: now + the shutdown timeout), then stop for good.

        What is still unsent is dropped, counted and (unless `report=False`: setup's shutdown
        reports every signal in one line) reported."""
        if self._closed:
            return
        if deadline is None:
            deadline = time.monotonic() + self.shutdown_timeout_s
        self.flush(max(0.0, deadline - time.monotonic()))
        self._closed = True
        self._stop = True
        self._wake.set()
        self.stop_waiting()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        # Still busy (an export retrying against a dead collector): shutting the exporter down
        # interrupts its retry wait, and the thread ends.
        call_quietly(self._exporter.shutdown)
        self._thread.join(0.5)
        left = self.pending()
        if left:
            self._queue.clear()
            self._held = []
            self._drop(left, "exit")
            if report:
                report_lost_at_exit([self])

    # -- export thread ----------------------------------------------------------------------
    def _queue_or_held(self) -> bool:
        return bool(self._queue or self._held)

    def _run(self) -> None:
        while not self._stop:
            if self._held:
                self._sleep_backoff()
                woken = False
            else:
                woken = self._wake.wait(self._delay_s)
                self._wake.clear()
            if self._stop:
                break
            # A full batch woke us: send full batches. The timer or a flush: send everything.
            everything = not woken or self._urgent > 0
            while self._next_batch(everything) and not self._stop:
                if not self._export_held():
                    break

    def _sleep_backoff(self) -> None:
        # A retry waits out its backoff even while new items arrive (they would wake it at
        # every batch); a flush() or the shutdown cuts it short, and so does the collector
        # coming back (polled while it was unreachable), so the backlog leaves at once.
        until = time.monotonic() + self._backoff()
        while not self._stop and not self._urgent:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(min(remaining, POLL_S) if self._unreachable else remaining)
            self._wake.clear()
            if self._unreachable and reachable(self.endpoint, POLL_S):
                return

    def _next_batch(self, everything: bool) -> bool:
        if self._held:
            return True
        queue = self._queue
        if len(queue) < (1 if everything else self._batch_size):
            return False
        with self._done:
            self._held = [queue.popleft() for _ in range(min(len(queue), self._batch_size))]
            self._taken += len(self._held)
        self._release_waiters()
        return True

    def _export_held(self) -> bool:
        batch = self._held
        started = time.monotonic()
        ok, reason = call_quietly(lambda: self._exporter.export(batch))
        if ok:
            self._counters.add("exported", len(batch))
            self._refused = self._failures = 0
            if (
                not self._armed
                and time.monotonic() - started < self._wait_s
                and len(self._queue) < self._rearm_below
            ):
                self._armed = True  # the collector keeps up again: a full queue may wait
            self._settle(len(batch))
            outage.recovered(self.signal, self.endpoint)
            if len(self._queue) < self._after_outage:
                self._drained = True  # the backlog is delivered (see _drop)
            return True
        self._counters.add("failed", 1)
        self._failures += 1
        self._disarm(self._after_outage)  # they drop at once now: an outage must not wait
        if self._stop:
            return False
        self._unreachable = not reachable(self.endpoint)
        if self._unreachable:
            outage.failed(self.signal, self.endpoint, reason, self._buffering("unreachable"))
            return False
        outage.failed(self.signal, self.endpoint, reason, self._buffering("refusing data"))
        self._refused += 1
        if self._refused >= MAX_REFUSED_ATTEMPTS:
            diagnostics.report(
                f"export.{self.signal}.refused",
                "dashfrog_sdk: the OTLP collector at %s refused %s %d times (%s); dropping "
                "that batch so the next ones can go",
                self.endpoint,
                self.signal,
                self._refused,
                reason or "no reason given",
            )
            self._refused = 0
            self._drop(len(batch), "refused")
            self._settle(len(batch))
        return False

    def _buffering(self, state: str) -> str:
        noun = NOUNS.get(self.signal, self.signal)
        return f"it is {state}; buffering up to {self._max_queue} {noun} and retrying"

    def _settle(self, n: int) -> None:
        with self._done:
            self._held = []
            self._settled += n
            self._done.notify_all()

    def _backoff(self) -> float:
        base = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** max(0, self._failures - 1))
        return float(base * random.uniform(0.8, 1.2))  # jitter: many processes restarting together

    def _drop(self, n: int, why: str) -> None:
        self._counters.add("dropped", n)
        if why == "full":
            # One warning per episode. A new episode: since the last drop, an export left the
            # queue under half (and under a batch), and EPISODE_QUIET_S passed without a drop.
            # Re-arming at the first delivered batch printed once per batch while a backlog
            # drained (new items kept the queue full); re-arming whenever fewer than a batch
            # stayed queued printed once per burst when the batch is the whole queue (a queue
            # of 100: every batch leaves it empty, every burst overflows it again).
            now = time.monotonic()
            if self._drained and now - self._last_full_drop >= EPISODE_QUIET_S:
                diagnostics.rearm(f"export.{self.signal}.queue_full")
            self._drained = False
            self._last_full_drop = now
            diagnostics.report(
                f"export.{self.signal}.queue_full",
                "dashfrog_sdk: the %s export queue is full (%d items: the collector is slow or "
                "down); new ones are dropped and counted in dashfrog_sdk.stats()",
                NOUNS.get(self.signal, self.signal),
                self._max_queue,
            )
        elif why == "exit":
            self.lost_at_exit += n
            diagnostics.count(f"export.{self.signal}.lost_at_exit", n)


def report_lost_at_exit(pipelines: Sequence[Pipeline[Any]]) -> None:
    """One line for what every signal lost at exit ("40 spans and 40 log records ..."): the
    README promises one line, not one per signal."""
    lost = [p for p in pipelines if p.lost_at_exit]
    if not lost:
        return
    what = " and ".join(f"{p.lost_at_exit} {NOUNS.get(p.signal, p.signal)}" for p in lost)
    endpoints = ", ".join(dict.fromkeys(p.endpoint for p in lost))
    diagnostics.report(
        "export.lost_at_exit",
        "dashfrog_sdk: %s could not be exported to %s within the shutdown timeout "
        "(DASHFROG_SHUTDOWN_TIMEOUT=%ss)",
        what,
        endpoints,
        lost[0].shutdown_timeout_s,
        n=sum(p.lost_at_exit for p in lost),
    )
