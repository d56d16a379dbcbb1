"""Nothing lost on exit. Normal exit, SIGTERM and sys.exit inside a flow all flush
within DASHFROG_SHUTDOWN_TIMEOUT; a flow still open at exit is recorded as cancelled."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable

from tests.export.conftest import App, app_env
from tests.support.collector import RotelCollector

# Nothing is exported before exit unless the exit path does it.
SLOW = {
    "OTEL_BSP_SCHEDULE_DELAY": "60000",
    "OTEL_BLRP_SCHEDULE_DELAY": "60000",
    "OTEL_METRIC_EXPORT_INTERVAL": "60000",
}


def _ours(env: dict[str, str]) -> Callable[..., bool]:
    return lambda item: item.resource.get("service.name") == env["OTEL_SERVICE_NAME"]


def test_normal_exit_flushes_every_signal(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    env = app_env(collector, "grpc", **SLOW)
    # Each flow also records a custom event: a log record whatever the flow's duration
    # (the start events of flows that ended before they were sent are not sent).
    script = """
for i in range(300):
    with flow.start("order", tenant="acme"):
        for s in range(2):
            with step.start(f"step{s}"):
                flow.event("tick", n=s)
"""
    app = start_app(env, script)
    assert app.wait() == 0, app.stderr
    receiver, ours = collector.receiver, _ours(env)
    receiver.wait_for_spans(lambda s: ours(s) and s.name == "flow order", count=300)
    receiver.wait_for_logs(lambda r: ours(r) and r.event_name == "dashfrog.flow.event", count=600)
    started = receiver.wait_for_metrics(lambda m: ours(m) and m.name == "dashfrog.flows.started")
    assert started[-1].value(**{"dashfrog.tenant": "acme"}) == 300


def test_sys_exit_inside_a_flow(collector: RotelCollector, start_app: Callable[..., App]) -> None:
    env = app_env(collector, "http/protobuf", **SLOW)
    script = """
import sys
with flow.start("job", tenant="acme"):
    with step.start("work"):
        sys.exit(3)
"""
    app = start_app(env, script)
    assert app.wait() == 3, app.stderr
    ours = _ours(env)
    spans = collector.receiver.wait_for_spans(ours, count=2)
    by_name = {s.name: s for s in spans}
    assert by_name["flow job"].attributes["dashfrog.flow.status"] == "cancelled"
    assert by_name["step work"].attributes["dashfrog.step.status"] == "cancelled"
    ended = collector.receiver.wait_for_metrics(
        lambda m: ours(m) and m.name == "dashfrog.flows.ended"
    )
    assert ended[-1].value(**{"dashfrog.flow.status": "cancelled"}) == 1


WAIT_IN_FLOW = """
import threading
run_flows(20)
with flow.start("long_job", tenant="acme"):
    with step.start("waiting"):
        print("in flow", flush=True)
        threading.Event().wait(60)
"""


def test_sigterm_flushes_and_cancels_the_running_flow(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    env = app_env(collector, "grpc", **SLOW)
    app = start_app(env, WAIT_IN_FLOW)
    assert app._line(30) == "in flow\n"
    app.proc.send_signal(signal.SIGTERM)
    assert app.wait() == 128 + signal.SIGTERM, app.stderr
    ours = _ours(env)
    spans = collector.receiver.wait_for_spans(
        lambda s: ours(s) and s.name.startswith("flow "), count=21
    )
    long_job = next(s for s in spans if s.name == "flow long_job")
    assert long_job.attributes["dashfrog.flow.status"] == "cancelled"
    assert sum(s.name == "flow order" for s in spans) == 20


def test_sigterm_handler_of_the_app_is_kept(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    env = app_env(collector, "grpc", **SLOW)
    script = """
import signal, threading
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: (print("app handler", flush=True), stop.set()))
import dashfrog_sdk
dashfrog_sdk.setup()
with flow.start("served", tenant="acme"):
    print("ready", flush=True)
    stop.wait(60)
"""
    app = start_app(env, script)
    app._line(30)
    app.proc.send_signal(signal.SIGTERM)
    assert app.wait() == 0, app.stderr  # the app decided to exit normally
    assert app.output() == ["app handler\n"]
    span = collector.receiver.wait_for_spans(lambda s: _ours(env)(s) and s.name == "flow served")[0]
    assert span.attributes["dashfrog.flow.status"] == "completed"


def test_flow_open_at_exit_is_recorded_as_cancelled(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    env = app_env(collector, "grpc", **SLOW)
    script = """
import threading
started = threading.Event()
def worker():
    with flow.start("stuck", tenant="acme") as flow_id:
        print(flow_id, flush=True)
        started.set()
        threading.Event().wait()
threading.Thread(target=worker, daemon=True).start()
started.wait(10)
"""
    app = start_app(env, script)
    assert app.wait() == 0, app.stderr
    flow_id = app.output()[0].strip()
    ours = _ours(env)
    end = collector.receiver.wait_for_logs(
        lambda r: ours(r) and r.event_name == "dashfrog.flow.end"
    )[0]
    assert end.attributes["dashfrog.flow.id"] == flow_id
    assert end.attributes["dashfrog.flow.status"] == "cancelled"
    assert end.attributes["dashfrog.error.type"] == "ProcessExit"
    assert end.attributes["dashfrog.flow.span_id"] == end.span_id  # where the flow span was
    assert "1 flow(s) still open at exit were recorded as cancelled" in app.stderr
    ended = collector.receiver.wait_for_metrics(
        lambda m: ours(m) and m.name == "dashfrog.flows.ended"
    )
    assert ended[-1].value(**{"dashfrog.flow.status": "cancelled"}) == 1


def test_exit_during_outage_is_bounded_by_the_shutdown_timeout(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    collector.kill()
    env = app_env(
        collector, "grpc", DASHFROG_SHUTDOWN_TIMEOUT="1s", OTEL_EXPORTER_OTLP_TIMEOUT="10000"
    )
    app = start_app(env, 'run_flows(50)\nprint("done", flush=True)')
    app._line(30)
    t0 = time.monotonic()
    assert app.wait() == 0, app.stderr
    took = time.monotonic() - t0
    assert took < 1 + 1.5, took  # the timeout, plus interpreter teardown
    # (start events of flows that ended before they were sent are not sent: README, Data model)
    assert re.search(r"100 spans( and \d+ log records)? could not be exported", app.stderr), (
        app.stderr
    )


def test_an_outage_until_exit_is_one_warning_and_one_exit_line(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    """README: one warning per outage, and what is lost at exit reported in one line (not one
    line per signal)."""
    collector.kill()
    env = app_env(collector, "grpc", DASHFROG_SHUTDOWN_TIMEOUT="1s")
    app = start_app(env, 'run_flows(20)\nprint("done", flush=True)')
    app._line(30)
    assert app.wait() == 0, app.stderr
    lines = [line for line in app.stderr.splitlines() if "dashfrog_sdk:" in line]
    lost = [line for line in lines if "could not be exported" in line]
    assert len(lost) == 1, app.stderr
    assert re.search(r"40 spans( and \d+ log records)? could not be exported", lost[0]), lost[0]
    # At most the outage's one warning besides (if an export was tried before exit).
    assert len(lines) <= 2 and all("unreachable" in x for x in lines if x not in lost), lines
