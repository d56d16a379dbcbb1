"""When a full export queue waits for room (backpressure) and when it does not, on a Pipeline
driven directly by fake exporters: a slow but healthy collector, a dying one, recovery after an
outage, dashfrog's own threads, an asyncio event loop, flush and shutdown. The real-collector
cases are in test_backpressure.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from dashfrog_sdk import _threads
from dashfrog_sdk.exporting.counts import SignalCounters
from dashfrog_sdk.exporting.pipeline import Pipeline
from tests.support.procs import wait_until


class _Result:
    def __init__(self, ok: bool) -> None:
        self.name = "SUCCESS" if ok else "FAILURE"


class FakeExporter:
    """Each export takes `delay_s`, then succeeds unless `fail` is set."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.fail = False
        self.exported = 0
        self.calls = 0

    def export(self, batch: Sequence[Any], /) -> _Result:
        self.calls += 1
        time.sleep(self.delay_s)
        if self.fail:
            return _Result(False)
        self.exported += len(batch)
        return _Result(True)

    def shutdown(self) -> None:
        pass


# A port nothing listens on: a failed export is "unreachable" (polled, never refused-dropped).
ENDPOINT = "http://127.0.0.1:9"


def make(exporter: FakeExporter, *, wait_s: float, max_queue: int = 100, batch: int = 20):
    counters = SignalCounters()
    pipeline: Pipeline[int] = Pipeline(
        "traces",
        lambda: exporter,
        endpoint=ENDPOINT,
        max_queue=max_queue,
        batch_size=batch,
        delay_s=0.05,
        shutdown_timeout_s=2.0,
        counters=counters,
        wait_s=wait_s,
    )
    return pipeline, counters


@pytest.fixture
def pipelines() -> Iterator[list[Pipeline[int]]]:
    made: list[Pipeline[int]] = []
    yield made
    for p in made:
        p.shutdown(time.monotonic() + 1, report=False)


def arm(pipeline: Pipeline[int], exporter: FakeExporter) -> None:
    """One fast export got through: the pipeline is armed."""
    pipeline.put(0)
    assert pipeline.flush(5)
    assert exporter.exported >= 1


def produce(pipeline: Pipeline[int], seconds: float, every_s: float = 0.0005) -> list[float]:
    """put() flat out (one item per `every_s`) for `seconds`; the duration of each put."""
    stalls: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        pipeline.put(1)
        stalls.append(time.monotonic() - t)
        time.sleep(every_s)
    return stalls


def test_a_slow_healthy_collector_costs_one_wait_not_one_per_batch(
    pipelines: list[Pipeline[int]],
) -> None:
    """Each export succeeds, but takes longer than the bound: after the first wait runs out, no
    put waits again (before: a wait of the full bound per batch, 6 s blocked out of 9 s)."""
    exporter = FakeExporter()
    pipeline, counters = make(exporter, wait_s=0.3, max_queue=100, batch=512)
    pipelines.append(pipeline)
    arm(pipeline, exporter)
    exporter.delay_s = 0.5
    stalls = produce(pipeline, 3.0)
    blocked = sum(s for s in stalls if s > 0.05)
    assert counters.wait_expired == 1, counters.snapshot()
    assert blocked < 2 * 0.3, (blocked, counters.snapshot())
    assert counters.dropped > 0 and exporter.exported > 0
    assert 0.25 < counters.waited_s < 0.6, counters.snapshot()


def test_waiters_drop_together_when_the_first_wait_runs_out(
    pipelines: list[Pipeline[int]],
) -> None:
    """A hung collector: the threads already waiting drop when the first wait runs out, not one
    bound later each (before: up to twice the bound)."""
    exporter = FakeExporter()
    pipeline, counters = make(exporter, wait_s=0.5, max_queue=20, batch=20)
    pipelines.append(pipeline)
    arm(pipeline, exporter)
    exporter.delay_s = 3.0  # hangs: far longer than the bound
    pipeline.put(1)  # a batch to be taken, so the export thread is busy
    wait_until(lambda: exporter.calls >= 2, timeout=5)
    for _ in range(20):
        pipeline.put(1)
    durations: list[float] = []

    def waiter(delay: float) -> None:
        time.sleep(delay)
        t = time.monotonic()
        pipeline.put(2)
        durations.append(time.monotonic() - t)

    threads = [threading.Thread(target=waiter, args=(0.05 * i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.wait_expired == 1, counters.snapshot()
    assert max(durations) < 0.5 + 0.1, durations  # all dropped at the first expiry


def test_no_wait_while_the_backlog_of_an_outage_drains(pipelines: list[Pipeline[int]]) -> None:
    """After an outage the queue is still full when the first export succeeds: producers drop
    instead of waiting for every batch, until the backlog is drained once."""
    exporter = FakeExporter()
    pipeline, counters = make(exporter, wait_s=0.5, max_queue=200, batch=10)
    pipelines.append(pipeline)
    arm(pipeline, exporter)
    exporter.fail = True
    pipeline.put(1)
    wait_until(lambda: counters.failed >= 1, timeout=5)  # disarmed: the queue fills, no wait
    for _ in range(400):
        pipeline.put(1)
    wait_until(lambda: counters.failed >= 1, timeout=5)
    waited, waited_s = counters.waited, counters.waited_s  # (a put may wait before the failure)
    exporter.delay_s, exporter.fail = 0.02, False  # back, but slower than the producer
    pipeline.kick()  # cut the backoff short
    produce(pipeline, 1.0, every_s=0.0005)
    assert exporter.exported > 100, counters.snapshot()  # it recovered
    assert counters.waited == waited and counters.waited_s == waited_s, counters.snapshot()
    # Once drained, a full queue waits again.
    exporter.delay_s = 0.0
    assert pipeline.flush(10)
    pipeline.put(1)
    assert pipeline.flush(10)
    assert pipeline._armed


def test_own_threads_and_event_loops_never_wait(pipelines: list[Pipeline[int]]) -> None:
    exporter = FakeExporter()
    pipeline, counters = make(exporter, wait_s=2.0, max_queue=10, batch=10)
    pipelines.append(pipeline)
    arm(pipeline, exporter)
    exporter.delay_s = 1.0
    pipeline.put(1)
    pipeline.kick()
    wait_until(lambda: exporter.calls >= 2, timeout=5)  # busy for a second
    with _threads.own():  # filled without waiting
        for _ in range(10):
            pipeline.put(1)
    dropped = counters.dropped

    def timed() -> float:
        t = time.monotonic()
        pipeline.put(3)
        return time.monotonic() - t

    durations: list[float] = []

    def own() -> None:
        durations.append(timed())

    thread = threading.Thread(target=_threads.target(own))
    thread.start()
    thread.join()

    async def coroutine() -> float:
        return timed()

    durations.append(asyncio.run(coroutine()))
    with _threads.own():
        durations.append(timed())
    assert max(durations) < 0.1, durations
    assert counters.waited == 0 and counters.wait_expired == 0, counters.snapshot()
    assert counters.dropped == dropped + 3
    assert pipeline._armed  # and another thread would wait


def test_shutdown_with_a_full_queue_and_a_slow_collector_keeps_its_timeout(
    pipelines: list[Pipeline[int]],
) -> None:
    """A producer waiting when the shutdown starts drops at once, and the shutdown keeps to its
    deadline although the collector accepts (slowly) and the queue stays full."""
    exporter = FakeExporter()
    pipeline, counters = make(exporter, wait_s=5.0, max_queue=50, batch=10)
    arm(pipeline, exporter)
    exporter.delay_s = 0.4
    stop = threading.Event()
    done: list[float] = []

    def producer() -> None:
        while not stop.is_set():
            t = time.monotonic()
            pipeline.put(1)
            done.append(time.monotonic() - t)

    thread = threading.Thread(target=producer)
    thread.start()
    wait_until(lambda: counters.waited > 0, timeout=5)
    t = time.monotonic()
    pipeline.stop_waiting()
    pipeline.shutdown(time.monotonic() + 1.0, report=False)
    took = time.monotonic() - t
    stop.set()
    thread.join(5)
    assert took < 1.0 + 0.6, took  # the deadline, plus the export in flight's last join
    assert max(done[-50:]) < 0.5, max(done[-50:])


def test_the_lifecycle_dispatcher_never_waits() -> None:
    """The dispatcher emits log records into a logs pipeline while it holds the bus's lock: a
    wait there blocked flush() behind it, and the producers behind flush (chained waits). It is
    one of dashfrog's own threads, so a full queue never makes it wait."""
    from dashfrog_sdk.lifecycle import bus, records

    seen: list[bool] = []

    def sink(batch: Sequence[Any]) -> None:
        seen.append(_threads.may_wait())

    bus.add_sink(sink)
    try:
        bus.start()
        records.pending.fields.extend([None] * records.WIDTH)  # one event, drained by it
        bus._bus._wake.set()
        wait_until(lambda: seen, timeout=5)
    finally:
        bus.remove_sink(sink)
    assert seen == [False]
