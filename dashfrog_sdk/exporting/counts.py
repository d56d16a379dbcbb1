"""Export counters per signal, the once-per-outage warning, and `stats()`.

Counters are plain integers bumped by the export threads (and by the calling thread only when
a full queue drops an item): reading them costs nothing on the hot path, and the internal OTel
metrics are observable instruments whose callbacks read the same numbers at collection time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from dashfrog_sdk import _fork, diagnostics
from dashfrog_sdk.config import SIGNALS

logger = logging.getLogger("dashfrog_sdk")

UNREACHABLE = "export.unreachable"  # diagnostics key of the once-per-outage warning


class SignalCounters:
    """Cumulative for the process (they survive `shutdown()` / `setup()`; a forked child starts at 0).

    * ``exported``: items (spans, log records, metric data points) the collector accepted;
    * ``dropped``: items lost for good (queue full, rejected after retries, left at shutdown);
    * ``failed``: export attempts that failed (each is retried; a batch can fail many times);
    * ``waited``: items that found the queue full while the collector accepted data, and waited
      for room instead of being dropped (backpressure, ``DASHFROG_QUEUE_FULL_WAIT``);
    * ``wait_expired``: waits that ran out (the item was dropped; no thread waits again until
      the collector keeps up: see exporting.pipeline);
    * ``waited_s``: the time application threads spent waiting, in seconds, in all.
    """

    __slots__ = (
        "_lock",
        "dropped",
        "exported",
        "failed",
        "queued",
        "wait_expired",
        "waited",
        "waited_s",
    )

    def __init__(self) -> None:
        self.exported = 0
        self.dropped = 0
        self.failed = 0
        self.waited = 0
        self.wait_expired = 0
        self.waited_s = 0.0
        self.queued: Callable[[], int] = lambda: 0
        self._lock = threading.Lock()

    def add(self, name: str, n: float) -> None:
        # Export threads and (for drops) calling threads both write: `+=` is not atomic.
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, float]:
        return {
            "exported": self.exported,
            "dropped": self.dropped,
            "failed": self.failed,
            "waited": self.waited,
            "wait_expired": self.wait_expired,
            "waited_s": round(self.waited_s, 3),
            "queued": self.queued(),
        }


counters: dict[str, SignalCounters] = {signal: SignalCounters() for signal in SIGNALS}


def stats() -> dict[str, Any]:
    """Export counts per signal, plus every diagnostics counter.

    Example:
        >>> dashfrog_sdk.stats()
        {'traces': {'exported': 1200, 'dropped': 0, 'failed': 3, 'waited': 0,
                    'wait_expired': 0, 'waited_s': 0.0, 'queued': 0},
         'logs': {...}, 'metrics': {...}, 'diagnostics': {'export.unreachable': 3}}
    """
    out: dict[str, Any] = {signal: c.snapshot() for signal, c in counters.items()}
    out["diagnostics"] = diagnostics.counts()
    return out


def reset_after_fork() -> None:
    """A forked child counts its own exports: the parent's numbers are the parent's."""
    for c in counters.values():
        c.exported = c.dropped = c.failed = c.waited = c.wait_expired = 0
        c.waited_s = 0.0
        c._lock = threading.Lock()
    _outage.reset()


class _Outage:
    """One warning when the collector becomes unreachable, one info line when it is back.

    Shared by the three signals: a collector restart is one outage, not three warnings.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def failed(self, signal: str, endpoint: str, reason: str, buffered: str) -> None:
        diagnostics.report(
            UNREACHABLE,
            "dashfrog_sdk: export to the OTLP collector at %s failed: %s (%s). The application "
            "is not affected; export resumes when the collector accepts data again",
            endpoint,
            buffered,
            reason or "no response",
        )
        with self._lock:
            self._down.add(signal)

    def recovered(self, signal: str, endpoint: str) -> None:
        with self._lock:
            if signal not in self._down:
                return
            self._down.discard(signal)
            over = not self._down
        if over:
            diagnostics.rearm(UNREACHABLE)
            logger.info("dashfrog_sdk: the OTLP collector at %s is reachable again", endpoint)

    def signals_down(self) -> frozenset[str]:
        return frozenset(self._down)


_outage = _Outage()
outage = _outage
_fork.in_child(reset_after_fork)

_instrumented: set[int] = set()


def register_metrics(provider: MeterProvider) -> None:
    """Expose the counters as OTel metrics on `provider` (once per provider).

    ``dashfrog.export.items`` (by ``signal`` and ``outcome``: exported / dropped),
    ``dashfrog.export.failures`` (failed attempts, by ``signal``), and the gauge
    ``dashfrog.export.queue.size``.
    """
    if id(provider) in _instrumented:
        return
    _instrumented.add(id(provider))
    meter = provider.get_meter("dashfrog_sdk.export")

    def items(_: CallbackOptions) -> Iterable[Observation]:
        for signal, c in counters.items():
            yield Observation(c.exported, {"signal": signal, "outcome": "exported"})
            yield Observation(c.dropped, {"signal": signal, "outcome": "dropped"})

    def failures(_: CallbackOptions) -> Iterable[Observation]:
        for signal, c in counters.items():
            yield Observation(c.failed, {"signal": signal})

    def queued(_: CallbackOptions) -> Iterable[Observation]:
        for signal, c in counters.items():
            if signal != "metrics":
                yield Observation(c.queued(), {"signal": signal})

    meter.create_observable_counter(
        "dashfrog.export.items",
        [items],
        unit="{item}",
        description="Telemetry items exported or dropped by dashfrog_sdk, by signal and outcome",
    )
    meter.create_observable_counter(
        "dashfrog.export.failures",
        [failures],
        unit="{attempt}",
        description="Failed export attempts (each one is retried), by signal",
    )
    meter.create_observable_gauge(
        "dashfrog.export.queue.size",
        [queued],
        unit="{item}",
        description="Items waiting for export, by signal",
    )
