"""Spans, lifecycle events (logs) and metrics reach a real collector over gRPC and
HTTP/protobuf, configured only by the standard OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.export.conftest import App, app_env
from tests.support.collector import Protocol, RotelCollector
from tests.support.otlp_receiver import HistogramValue, ReceivedMetric
from tests.support.procs import free_port

SCRIPT = """
import dashfrog_sdk
from dashfrog_sdk import flow, step, metrics

orders = metrics.Counter("shop.orders", labels=["region"], unit="{order}", description="orders")
sizes = metrics.Histogram("shop.basket", unit="{item}", buckets=[1, 5, 10])
metrics.Gauge("shop.queue", callback=lambda: {"acme": 7, "globex": 3}, unit="{job}")

with flow.start("checkout", tenant="acme", env="prod") as flow_id:
    with step.start("pay"):
        orders.add(2, tenant="acme", region="eu")
        sizes.record(4, tenant="acme")
        dashfrog_sdk.flush()  # while the flows run, so their start events are sent
try:
    with flow.start("checkout", tenant="globex"):
        with step.start("pay"):
            dashfrog_sdk.flush()
            raise RuntimeError("card declined")
except RuntimeError:
    pass
orders.add(1, tenant="globex", region="us")  # outside any flow: no flow name
print(flow_id, flush=True)
"""


def _metric(metrics: list[ReceivedMetric], name: str) -> ReceivedMetric:
    # Cumulative sums: the last export has the totals.
    return [m for m in metrics if m.name == name][-1]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_all_signals_reach_the_collector(
    collector: RotelCollector, start_app: Callable[..., App], protocol: Protocol
) -> None:
    env = app_env(collector, protocol)
    service = env["OTEL_SERVICE_NAME"]
    app = start_app(env, SCRIPT)
    assert app.wait() == 0, app.stderr
    flow_id = app.output()[-1].strip()
    receiver = collector.receiver

    spans = receiver.wait_for_spans(lambda s: s.resource.get("service.name") == service, count=4)
    flow_span = next(
        s
        for s in spans
        if s.attributes.get("dashfrog.flow.id") == flow_id and s.name == "flow checkout"
    )
    assert flow_span.attributes["dashfrog.tenant"] == "acme"
    assert flow_span.attributes["dashfrog.label.env"] == "prod"
    assert flow_span.attributes["dashfrog.flow.status"] == "completed"
    failed = [
        s
        for s in spans
        if s.name == "flow checkout" and s.attributes["dashfrog.tenant"] == "globex"
    ]
    assert (
        failed[0].attributes["dashfrog.flow.status"] == "failed"
        and failed[0].status_code == "ERROR"
    )

    logs = receiver.wait_for_logs(lambda r: r.resource.get("service.name") == service, count=4)
    starts = [r for r in logs if r.event_name == "dashfrog.flow.start"]
    assert {r.attributes["dashfrog.tenant"] for r in starts} == {"acme", "globex"}
    mine = next(r for r in starts if r.attributes["dashfrog.flow.id"] == flow_id)
    assert mine.span_id == flow_span.span_id and mine.trace_id == flow_span.trace_id

    def all_metrics() -> list[ReceivedMetric]:
        got = [m for m in receiver.metrics if m.resource.get("service.name") == service]
        names = {m.name for m in got}
        wanted = {"shop.orders", "shop.basket", "shop.queue", "dashfrog.flows.ended"}
        return got if wanted <= names else []

    metrics = receiver.wait_for(all_metrics, message="the app's metrics")
    orders = _metric(metrics, "shop.orders")
    assert orders.unit == "{order}" and orders.description == "orders" and orders.monotonic
    assert orders.value(**{"dashfrog.tenant": "acme", "region": "eu"}) == 2
    acme_point = next(a for a, _ in orders.points if a["dashfrog.tenant"] == "acme")
    assert acme_point["dashfrog.flow.name"] == "checkout"  # recorded inside the flow
    globex_point = next(a for a, _ in orders.points if a["dashfrog.tenant"] == "globex")
    assert "dashfrog.flow.name" not in globex_point
    basket = _metric(metrics, "shop.basket").value(**{"dashfrog.tenant": "acme"})
    assert (
        isinstance(basket, HistogramValue)
        and basket.count == 1
        and basket.explicit_bounds == (1, 5, 10)
    )
    queue = _metric(metrics, "shop.queue")
    assert queue.kind == "gauge"
    assert queue.value(**{"dashfrog.tenant": "acme"}) == 7
    assert queue.value(**{"dashfrog.tenant": "globex"}) == 3
    assert orders.resource["service.name"] == service

    ended = _metric(metrics, "dashfrog.flows.ended")
    assert ended.value(**{"dashfrog.tenant": "globex", "dashfrog.flow.status": "failed"}) == 1
    assert ended.value(**{"dashfrog.tenant": "acme", "dashfrog.flow.status": "completed"}) == 1
    started = _metric(metrics, "dashfrog.flows.started")
    assert started.value(**{"dashfrog.flow.name": "checkout", "dashfrog.tenant": "acme"}) == 1
    duration = _metric(metrics, "dashfrog.flow.duration")
    assert duration.unit == "s" and duration.kind == "histogram"
    steps = _metric(metrics, "dashfrog.step.duration")
    failed_step = steps.value(**{"dashfrog.step.name": "pay", "dashfrog.step.status": "failed"})
    assert failed_step.count == 1
    assert receiver.errors == []


def test_per_signal_endpoints_and_protocols(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    """The generic endpoint is dead; each signal goes where its own variables say."""
    dead = f"http://127.0.0.1:{free_port()}"
    env = app_env(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=dead,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector.grpc_endpoint,
        OTEL_EXPORTER_OTLP_LOGS_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=collector.http_endpoint + "/v1/logs",
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=collector.http_endpoint + "/v1/metrics",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_BLRP_SCHEDULE_DELAY="100",
    )
    service = env["OTEL_SERVICE_NAME"]
    app = start_app(env, SCRIPT)
    assert app.wait() == 0, app.stderr
    receiver = collector.receiver
    ours = lambda item: item.resource.get("service.name") == service  # noqa: E731
    receiver.wait_for_spans(ours, count=4)
    receiver.wait_for_logs(ours, count=4)
    receiver.wait_for_metrics(lambda m: ours(m) and m.name == "shop.orders")
    assert "export to the OTLP collector" not in app.stderr  # nothing went to the dead endpoint


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_headers_compression_and_timeout(
    collector: RotelCollector, start_app: Callable[..., App], protocol: Protocol
) -> None:
    env = app_env(
        collector,
        protocol,
        OTEL_EXPORTER_OTLP_HEADERS="x-api-key=s%3Dcret,x-team=payments",
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="5000",
    )
    script = """
from dashfrog_sdk.setup import _installed, setup
setup()
from dashfrog_sdk.setup import _installed
pipeline = _installed.pipelines[0]
exporter = pipeline._exporter
print(pipeline.signal, getattr(exporter, "_timeout", None) or exporter._client._timeout, flush=True)
from dashfrog_sdk import flow
with flow.start("gz", tenant="acme"):
    pass
"""
    app = start_app(env, script)
    assert app.wait() == 0, app.stderr
    signal, timeout = app.output()[0].split()
    assert signal == "traces" and float(timeout) == 5.0  # milliseconds, per the spec
    collector.receiver.wait_for_spans(
        lambda s: s.resource.get("service.name") == env["OTEL_SERVICE_NAME"] and s.name == "flow gz"
    )
