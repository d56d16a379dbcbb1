"""End-to-end checks of the test infrastructure itself, with the plain OpenTelemetry SDK.

Data goes SDK -> OTLP (gRPC or HTTP) -> real rotel collector -> OTLP/HTTP -> OtlpReceiver.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from tests.support.collector import Protocol, RotelCollector, collector_env
from tests.support.otlp_receiver import HistogramValue, OtlpReceiver, ReceivedMetric, _Handler
from tests.support.procs import ManagedProcess, free_port, port_open, wait_for_port, wait_until

PROTOCOLS: list[Protocol] = ["grpc", "http/protobuf"]
JSON = {"Content-Type": "application/json"}


def make_exporters(protocol: Protocol) -> tuple[SpanExporter, LogRecordExporter, MetricExporter]:
    """Exporters configured only by the OTEL_EXPORTER_OTLP_* environment (see collector_env)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(), OTLPLogExporter(), OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLog
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetric,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpan

    return HttpSpan(), HttpLog(), HttpMetric()


@dataclass
class Otel:
    service: str
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    meter_provider: MeterProvider

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()


def make_otel(protocol: Protocol) -> Otel:
    service = f"svc-{uuid.uuid4().hex[:12]}"  # unique per test: filters a shared receiver
    resource = Resource.create({"service.name": service, "deployment.environment": "test"})
    spans, logs, metrics = make_exporters(protocol)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans, schedule_delay_millis=50))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(logs, schedule_delay_millis=50)
    )
    reader = PeriodicExportingMetricReader(metrics, export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    return Otel(service, tracer_provider, logger_provider, meter_provider)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotelCollector]:
    rotel = RotelCollector(log_dir=tmp_path_factory.mktemp("rotel"))
    rotel.start()
    try:
        yield rotel
    finally:
        rotel.stop()


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> Protocol:
    value: Protocol = request.param
    return value


@pytest.fixture
def otel(
    collector: RotelCollector, protocol: Protocol, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Otel]:
    for key, value in collector_env(collector, protocol).items():
        monkeypatch.setenv(key, value)
    providers = make_otel(protocol)
    try:
        yield providers
    finally:
        providers.shutdown()


def test_spans_arrive_with_attributes_and_resource(otel: Otel, collector: RotelCollector) -> None:
    tracer = otel.tracer_provider.get_tracer("support.test")
    attrs: dict[str, AttributeValue] = {
        "dashfrog.tenant": "acme-corp",
        "n": 3,
        "ratio": 0.5,
        "ok": True,
        "tags": ["a", "b"],
    }
    with (
        tracer.start_as_current_span("parent", attributes=attrs) as parent,
        tracer.start_as_current_span("child", kind=SpanKind.SERVER) as child,
    ):
        child.add_event("retry", {"attempt": 2})
        child.set_status(Status(StatusCode.ERROR, "boom"))
    assert otel.tracer_provider.force_flush(10_000)

    mine = collector.receiver.wait_for_spans(
        lambda s: s.resource.get("service.name") == otel.service, count=2
    )
    by_name = {s.name: s for s in mine}
    got_parent, got_child = by_name["parent"], by_name["child"]
    assert got_parent.attributes == attrs
    assert got_parent.resource["deployment.environment"] == "test"
    assert got_parent.parent_span_id is None
    assert got_parent.span_id == format(parent.get_span_context().span_id, "016x")
    assert got_child.parent_span_id == got_parent.span_id
    assert (
        got_child.trace_id
        == got_parent.trace_id
        == format(child.get_span_context().trace_id, "032x")
    )
    assert (got_child.kind, got_parent.kind) == ("SERVER", "INTERNAL")
    assert (got_child.status_code, got_child.status_message) == ("ERROR", "boom")
    assert [(e.name, e.attributes) for e in got_child.events] == [("retry", {"attempt": 2})]
    assert got_child.scope == "support.test"
    assert got_parent.start_ns <= got_child.start_ns <= got_child.end_ns <= got_parent.end_ns


def test_log_record_arrives_with_event_name(otel: Otel, collector: RotelCollector) -> None:
    tracer = otel.tracer_provider.get_tracer("support.test")
    logger = otel.logger_provider.get_logger("support.events")
    with tracer.start_as_current_span("with-log") as span:
        logger.emit(
            event_name="dashfrog.flow.start",
            body={"message": "started", "count": 1},
            attributes={"dashfrog.flow.id": "f" * 32, "dashfrog.tenant": "acme-corp"},
            severity_number=SeverityNumber.INFO,
        )
    assert otel.logger_provider.force_flush(10_000)

    (record,) = collector.receiver.wait_for_logs(
        lambda r: r.resource.get("service.name") == otel.service
    )
    assert record.event_name == "dashfrog.flow.start"
    assert record.attributes == {"dashfrog.flow.id": "f" * 32, "dashfrog.tenant": "acme-corp"}
    assert record.body == {"message": "started", "count": 1}
    assert record.severity == SeverityNumber.INFO.value
    assert record.trace_id == format(span.get_span_context().trace_id, "032x")
    assert record.span_id == format(span.get_span_context().span_id, "016x")
    assert record.scope == "support.events"
    assert record.timestamp_ns > 0


def test_a_request_rotel_sends_again_arrives_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rotel delivers at least once: a receiver that stored a request but answered it after
    rotel's request timeout (a test process starved of CPU on a loaded CI machine) gets the
    same request again, and keeps both (a double send must show). Hence the harness's 60 s
    request timeout: with a short one, a test expecting one record saw two."""
    reply = _Handler._reply
    late = [1]

    def late_reply(handler: _Handler, code: int, body: bytes, content_type: str) -> None:
        if handler.path.startswith("/v1/logs") and late[0]:
            late[0] = 0
            time.sleep(1.5)  # longer than rotel's request timeout below
        reply(handler, code, body, content_type)

    monkeypatch.setattr(_Handler, "_reply", late_reply)
    with RotelCollector(log_dir=tmp_path, request_timeout="500ms") as rotel:
        for key, value in collector_env(rotel, "grpc").items():
            monkeypatch.setenv(key, value)
        otel = make_otel("grpc")
        try:
            otel.logger_provider.get_logger("support.events").emit(
                event_name="dashfrog.flow.end", attributes={"dashfrog.flow.id": "e" * 32}
            )
            assert otel.logger_provider.force_flush(10_000)

            def ends() -> list[Any]:
                logs = rotel.receiver.logs
                return [r for r in logs if r.resource["service.name"] == otel.service]

            wait_until(lambda: len(ends()) >= 2, timeout=20)
            assert ends()[0] == ends()[1]  # the same record, received twice
        finally:
            otel.shutdown()
    assert "will retry" in rotel.log_text()  # rotel did send it twice


def test_counter_and_histogram_arrive(otel: Otel, collector: RotelCollector) -> None:
    meter = otel.meter_provider.get_meter("support.metrics")
    counter = meter.create_counter("dashfrog.test.orders", unit="1")
    counter.add(2, {"dashfrog.tenant": "acme-corp"})
    counter.add(3, {"dashfrog.tenant": "acme-corp"})
    counter.add(1, {"dashfrog.tenant": "globex"})
    histogram = meter.create_histogram("dashfrog.test.duration", unit="s")
    histogram.record(1.5, {"step": "validate"})
    histogram.record(2.5, {"step": "validate"})
    assert otel.meter_provider.force_flush(10_000)

    def mine(name: str) -> list[ReceivedMetric]:
        return collector.receiver.wait_for_metrics(
            lambda m: m.name == name and m.resource.get("service.name") == otel.service
        )

    (orders,) = mine("dashfrog.test.orders")
    assert (orders.kind, orders.unit, orders.monotonic) == ("sum", "1", True)
    assert orders.value(**{"dashfrog.tenant": "acme-corp"}) == 5
    assert orders.value(**{"dashfrog.tenant": "globex"}) == 1
    (duration,) = mine("dashfrog.test.duration")
    assert duration.kind == "histogram"
    point = duration.value(step="validate")
    assert isinstance(point, HistogramValue)
    assert (point.count, point.sum, point.min, point.max) == (2, 4.0, 1.5, 2.5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kill_and_restart_on_same_ports(
    protocol: Protocol, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RotelCollector(log_dir=tmp_path) as rotel:
        for key, value in collector_env(rotel, protocol).items():
            monkeypatch.setenv(key, value)
        otel = make_otel(protocol)
        try:
            tracer = otel.tracer_provider.get_tracer("support.test")
            with tracer.start_as_current_span("before-crash"):
                pass
            assert otel.tracer_provider.force_flush(10_000)
            rotel.receiver.wait_for_spans(lambda s: s.name == "before-crash")

            ports, old_pid = (rotel.grpc_port, rotel.http_port), rotel.pid
            rotel.kill()
            assert not rotel.running
            assert not port_open("127.0.0.1", rotel.grpc_port)
            assert not port_open("127.0.0.1", rotel.http_port)

            rotel.restart()
            assert rotel.running and rotel.pid != old_pid
            assert (rotel.grpc_port, rotel.http_port) == ports
            # The same provider and exporter (and gRPC channel) reconnect to the new process.
            with tracer.start_as_current_span("after-restart"):
                pass
            assert otel.tracer_provider.force_flush(20_000)
            rotel.receiver.wait_for_spans(lambda s: s.name == "after-restart")

            rotel.restart()  # from a running collector: graceful stop, same ports again
            assert (rotel.grpc_port, rotel.http_port) == ports
            with tracer.start_as_current_span("after-graceful-restart"):
                pass
            assert otel.tracer_provider.force_flush(20_000)
            rotel.receiver.wait_for_spans(lambda s: s.name == "after-graceful-restart")
        finally:
            otel.shutdown()
    assert rotel.log_text().count("Starting Rotel") == 3
    assert not rotel.running


def test_receiver_accepts_gzip_protobuf_and_json() -> None:
    with OtlpReceiver() as receiver:
        request = ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.name, span.trace_id, span.span_id = "pb", bytes(range(16)), bytes(range(8))
        post(
            f"{receiver.endpoint}/v1/traces",
            gzip.compress(request.SerializeToString()),
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        body = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "j"}}]
                    },
                    "scopeSpans": [
                        {
                            "scope": {"name": "js"},
                            "spans": [
                                {
                                    "name": "json",
                                    "traceId": "0af7651916cd43dd8448eb211c80319c",
                                    "spanId": "b7ad6b7169203331",
                                    "parentSpanId": "00f067aa0ba902b7",
                                    "kind": 2,
                                    "attributes": [
                                        {"key": "n", "value": {"intValue": "7"}},
                                        {
                                            "key": "l",
                                            "value": {
                                                "arrayValue": {"values": [{"boolValue": True}]}
                                            },
                                        },
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
        post(f"{receiver.endpoint}/v1/traces", json.dumps(body).encode(), JSON)

        spans = {s.name: s for s in receiver.wait_for_spans(count=2, timeout=5)}
        assert spans["pb"].trace_id == bytes(range(16)).hex()
        assert spans["pb"].parent_span_id is None
        js = spans["json"]
        assert (js.trace_id, js.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
        assert (js.parent_span_id, js.kind, js.scope) == ("00f067aa0ba902b7", "SERVER", "js")
        assert js.attributes == {"n": 7, "l": [True]}
        assert js.resource == {"service.name": "j"}

        # A log record without the event_name field: event_name falls back to "event.name".
        logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1700000000000000000", "severityNumber": 9,
            "body": {"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 1.5}}]}},
            "attributes": [{"key": "event.name", "value": {"stringValue": "legacy.event"}}],
        }]}]}]}  # fmt: skip
        post(f"{receiver.endpoint}/v1/logs", json.dumps(logs).encode(), JSON)
        (record,) = receiver.wait_for_logs(timeout=5)
        assert (record.event_name, record.body, record.severity) == ("legacy.event", {"k": 1.5}, 9)
        assert (record.trace_id, record.timestamp_ns) == (None, 1_700_000_000_000_000_000)

        with pytest.raises(AssertionError, match=r"(?s)received 2 spans, 1 logs.*'json'"):
            receiver.wait_for_spans(lambda s: s.name == "never", timeout=0.2)
        receiver.clear()
        assert receiver.spans == []


def post(url: str, data: bytes, headers: dict[str, str]) -> None:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_managed_process_escalates_to_sigkill_and_reaps(tmp_path: Path) -> None:
    port = free_port()
    script = (
        "import signal, socket, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = ManagedProcess([sys.executable, "-c", script], log_path=tmp_path / "p.log")
    with proc:
        wait_for_port("127.0.0.1", port, timeout=10, process=proc)
        proc.wait_for_log("ready", timeout=10)
        assert proc.stop(timeout=0.3) == -9  # SIGTERM ignored -> SIGKILL
    assert not proc.running and "ready" in proc.log_text()
    assert not port_open("127.0.0.1", port)
