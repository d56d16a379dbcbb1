"""Collector outages: the collector is down at start-up, killed mid-run, restarted. SDK calls never raise
and never block; what is produced meanwhile is buffered (bounded) and delivered afterwards;
what exceeds the bound is dropped and counted; one warning per outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.export.conftest import App, app_env
from tests.support.collector import RotelCollector
from tests.support.procs import wait_until

WARNING = "export to the OTLP collector at"
# Flow calls only append to in-memory queues; on a loaded 2-core CI box a scheduler hiccup can
# still take tens of ms. The bound that matters: far below the 2 s export timeout.
MAX_CALL_MS = 250
SIGNALS_DOWN = (
    "from dashfrog_sdk.exporting.counts import outage\nresult = sorted(outage.signals_down())"
)


def _flow_ids(collector: RotelCollector, service: str) -> set[str]:
    return {
        s.attributes["dashfrog.flow.id"]
        for s in collector.receiver.spans
        if s.resource.get("service.name") == service and s.name.startswith("flow ")
    }


def _wait_delivered(
    collector: RotelCollector, service: str, ids: set[str], timeout: float = 40
) -> None:
    wait_until(
        lambda: ids <= _flow_ids(collector, service),
        timeout=timeout,
        message=lambda: f"{len(ids - _flow_ids(collector, service))} of {len(ids)} flows missing",
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_down_at_startup(
    collector: RotelCollector, start_app: Callable[..., App], protocol: Any
) -> None:
    collector.kill()  # ports known, nothing listening
    env = app_env(collector, protocol)
    app = start_app(env)
    first = app.call("flows", n=200, steps=2)
    assert first["max_ms"] < MAX_CALL_MS
    assert app.call("count", tenant="acme")["ms"] < MAX_CALL_MS
    wait_until(lambda: app.call("stats")["traces"]["failed"] > 0, timeout=20)
    stats = app.call("stats")
    assert stats["traces"]["queued"] > 0 and stats["traces"]["dropped"] == 0
    assert not app.call("flush", timeout=0.5)["ok"]  # bounded, says it could not deliver

    collector.restart()
    second = app.call("flows", n=50)
    ids = set(first["ids"]) | set(second["ids"])
    _wait_delivered(collector, env["OTEL_SERVICE_NAME"], ids)
    collector.receiver.wait_for_metrics(
        lambda m: (
            m.name == "test.orders" and m.resource.get("service.name") == env["OTEL_SERVICE_NAME"]
        )
    )
    stats = app.call("stats")
    assert stats["traces"]["dropped"] == 0 and stats["logs"]["dropped"] == 0
    assert stats["traces"]["exported"] >= 250 * 2
    assert app.exit() == 0
    assert app.stderr.count(WARNING) == 1, app.stderr  # one warning for the outage, all signals


def test_collector_killed_mid_run_and_restarted(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    env = app_env(collector, "grpc")
    service = env["OTEL_SERVICE_NAME"]
    app = start_app(env)
    app.call("load_start", rate=300)
    wait_until(lambda: len(_flow_ids(collector, service)) > 50, timeout=20)
    collector.kill()
    killed_at = app.call("load_mark")  # flows from here on cannot have reached the collector
    wait_until(lambda: app.call("stats")["traces"]["failed"] > 0, timeout=20)
    wait_until(lambda: app.call("stats")["traces"]["queued"] > 300, timeout=20)
    collector.restart()
    # The outage is over when every signal got through again (each retries on its own backoff).
    wait_until(lambda: not app.call("exec", code=SIGNALS_DOWN), timeout=30)
    load = app.call("load_stop")
    assert len(load["ids"]) > killed_at + 300
    _wait_delivered(collector, service, set(load["ids"][killed_at:]))
    # Before the kill, the SDK handed spans to the collector and had them acknowledged: a
    # SIGKILLed collector may lose what it had not forwarded yet (at most its last requests).
    missing = set(load["ids"][:killed_at]) - _flow_ids(collector, service)
    assert len(missing) <= 100, len(missing)
    assert load["max_ms"] < MAX_CALL_MS, load
    stats = app.call("stats")
    assert stats["traces"]["dropped"] == 0 and stats["logs"]["dropped"] == 0, stats
    # A second outage warns again: the warning was re-armed by the recovery.
    collector.kill()
    app.call("flows", n=5)
    wait_until(lambda: app.stderr.count(WARNING) == 2, timeout=20, message=lambda: app.stderr)
    collector.restart()
    assert app.exit() == 0


FLOWS_WITH_EVENTS = """
worst = 0.0
for i in range(1000):
    t0 = time.perf_counter()
    with flow.start("order", tenant="acme"), step.start("s"):
        flow.event("a")
        flow.event("b")
    worst = max(worst, time.perf_counter() - t0)
result = {"max_ms": worst * 1000}
"""


def test_bounded_queue_drops_and_counts(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    collector.kill()
    env = app_env(
        collector,
        "http/protobuf",
        OTEL_BSP_MAX_QUEUE_SIZE="100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="50",
        OTEL_BLRP_MAX_QUEUE_SIZE="100",
        OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="50",
    )
    app = start_app(env)
    # 2000 spans and 2000 log records (custom events: these flows end before their start
    # events would be sent, so those are not).
    result = app.call("exec", code=FLOWS_WITH_EVENTS)
    assert result["max_ms"] < MAX_CALL_MS
    app.call("flush", timeout=0.2)  # events reach the log queue
    stats = app.call("stats")
    # (A flow whose start and end fall into two dispatcher batches sends its start events.)
    sent = {"traces": 2000, "logs": 4000 - stats["diagnostics"]["events.starts_not_sent"]}
    for signal in ("traces", "logs"):
        s = stats[signal]
        assert s["queued"] <= 100 + 50, stats  # the bound, plus the batch being retried
        assert s["exported"] + s["dropped"] + s["queued"] == sent[signal], stats
        assert s["dropped"] >= sent[signal] - 150
    collector.restart()
    wait_until(lambda: app.call("stats")["traces"]["queued"] == 0, timeout=30)
    stats = app.call("stats")
    assert stats["traces"]["exported"] + stats["traces"]["dropped"] == 2000
    assert app.exit() == 0
    assert app.stderr.count("export queue is full") == 2, app.stderr  # once per signal


# Refill the span queue to its bound each time an export after the outage takes a batch out:
# the backlog is being delivered, but the outage (and its full queue) is not over yet.
SET_QUIET = "result = 1\npipeline.EPISODE_QUIET_S = "
REFILL_WHILE_DRAINING = """
import time
from dashfrog_sdk.exporting import stats
seen = stats()["traces"]["exported"]
for _ in range(8):
    deadline = time.monotonic() + 20
    while stats()["traces"]["exported"] == seen and time.monotonic() < deadline:
        time.sleep(0.001)
    seen = stats()["traces"]["exported"]
    run_flows(60)
result = stats()
"""


@pytest.mark.parametrize("batch", ["10", None], ids=["batch-10", "batch-default"])
def test_queue_full_warns_once_per_outage(
    collector: RotelCollector, start_app: Callable[..., App], batch: str | None
) -> None:
    """The queue stays full while its backlog drains: each delivered batch must not re-arm the
    warning (it used to print once per batch, 56-118 times in one outage of benchmarks/export).
    With the default batch (512, cut to the queue's 100), "drained" once meant "fewer than one
    batch queued", which a full queue of 100 always was after a batch left: once per batch."""
    collector.kill()
    # No backpressure: the refills below must overflow the queue, not wait for room.
    sizes = {"OTEL_BSP_MAX_QUEUE_SIZE": "100", "DASHFROG_QUEUE_FULL_WAIT": "off"}
    if batch is not None:
        sizes["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] = batch
    env = app_env(collector, "http/protobuf", **sizes)
    app = start_app(env)
    # A new episode needs EPISODE_QUIET_S without drops after the backlog is delivered.
    quiet_s = 1.0
    app.call("exec", code=f"from dashfrog_sdk.exporting import pipeline\n{SET_QUIET}{quiet_s}")
    app.call("flows", n=100)  # 200 spans into a queue of 100
    wait_until(lambda: app.call("stats")["traces"]["dropped"] > 0, timeout=20)
    before = app.call("stats")["traces"]["dropped"]
    collector.restart()
    after = app.call("exec", code=REFILL_WHILE_DRAINING)
    assert after["traces"]["dropped"] > before, after  # the queue was full again and again
    wait_until(lambda: app.call("stats")["traces"]["queued"] == 0, timeout=30)
    assert app.stderr.count("the spans export queue is full") == 1, app.stderr
    # Delivered, and quiet since: a new outage that fills the queue warns again. (The sleep is
    # the quiet period under test, not a wait for a result.)
    time.sleep(quiet_s + 0.2)
    collector.kill()

    def warned_again() -> bool:  # flows until the queue (and the batch held) overflows
        app.call("flows", n=100)
        return app.stderr.count("the spans export queue is full") == 2

    wait_until(warned_again, timeout=20, message=lambda: app.stderr)
    collector.restart()
    assert app.exit() == 0


class _Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(400)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_refused_batches_are_dropped_after_retries(
    refusing_endpoint: str, start_app: Callable[..., App]
) -> None:
    """A collector that answers but refuses (HTTP 400) cannot block the queue forever."""
    env = app_env(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=refusing_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    script = """
from dashfrog_sdk.exporting import pipeline
pipeline.BACKOFF_MIN_S = pipeline.BACKOFF_MAX_S = 0.05  # keep the test short
import dashfrog_sdk, time
from dashfrog_sdk import flow
from dashfrog_sdk.exporting import stats
with flow.start("poison", tenant="acme"):
    pass
deadline = time.monotonic() + 20
while stats()["traces"]["dropped"] < 1 and time.monotonic() < deadline:
    time.sleep(0.05)
print(stats()["traces"], flush=True)
"""
    app = start_app(env, script)
    assert app.wait() == 0, app.stderr
    line = app.output()[-1]
    assert "'dropped': 1" in line and "'failed': 5" in line, line
    assert "refused traces 5 times" in app.stderr
    assert app.stderr.count(WARNING) == 1
