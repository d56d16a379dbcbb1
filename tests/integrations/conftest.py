"""Fixtures of the integration tests.

The test process plays service A (the caller, the Celery producer): it runs flows, with
`with_requests()`, `with_httpx()` and `with_celery()`, and exports to the collector. Services B
(uvicorn/werkzeug) and Celery workers are real subprocesses configured by the environment only,
exporting over OTLP/gRPC to a real rotel collector that forwards to the suite's OTLP receiver,
where the tests read what arrived.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import dashfrog_sdk
from dashfrog_sdk import conventions as c
from dashfrog_sdk.integrations import (
    unwrap_celery,
    unwrap_httpx,
    unwrap_requests,
    with_httpx,
    with_requests,
)
from tests.support import ROOT
from tests.support.collector import RotelCollector, collector_env
from tests.support.otlp_receiver import OtlpReceiver, ReceivedLog, ReceivedSpan

PYTHON = sys.executable
KEY = "integration-tests-shared-propagation-key"
# Values that a naive baggage encoding breaks: unicode, spaces, '+', ',', ';', '=' and '%'.
TENANT = "customer-123, inc. + co; x=y"
LABELS = {"note": "café + crème, 50% off; a=b", "who": "Zoë 🐸 ü", "expr": "1+1=2,3;4"}
REDIS = os.environ.get("DASHFROG_TEST_REDIS", "redis://127.0.0.1:6379/3")
AMQP = os.environ.get("DASHFROG_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def collector() -> Iterator[RotelCollector]:
    with RotelCollector() as running:
        yield running


@pytest.fixture(scope="session")
def receiver(collector: RotelCollector) -> OtlpReceiver:
    return collector.receiver


def service_env(collector: RotelCollector, service: str, **extra: str) -> dict[str, str | None]:
    """The environment of a service under test: OTLP/gRPC to the collector, nothing local."""
    env: dict[str, str | None] = {**collector_env(collector, "grpc")}
    env |= {"OTEL_SERVICE_NAME": service, "DASHFROG_STORE": "off", "DASHFROG_CONSOLE": "off"}
    env |= {
        "DASHFROG_PROPAGATION_KEY": None,
        "DASHFROG_PROPAGATE_TO": None,
        "PYTHONPATH": str(ROOT),
    }
    return env | extra


@pytest.fixture(scope="module")
def service_a(collector: RotelCollector) -> Iterator[str]:
    """The test process as service A; returns its service name. Signs with KEY."""
    name = unique("svc-a")
    resource = Resource.create({"service.name": name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True),
            schedule_delay_millis=100,
        )
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=collector.grpc_endpoint, insecure=True),
            schedule_delay_millis=100,
        )
    )
    dashfrog_sdk.shutdown()  # whatever an earlier test module configured
    dashfrog_sdk.setup(
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        propagate_to="internal,*.partner.example",
        propagation_key=KEY,
        store=False,
        console=False,
        handle_sigterm=False,
        flow_metrics=False,
    )
    with_requests()
    with_httpx()
    yield name
    unwrap_celery()  # producers made by the module's tests instrumented Celery with our provider
    unwrap_httpx()
    unwrap_requests()
    dashfrog_sdk.shutdown()
    tracer_provider.shutdown()
    logger_provider.shutdown()


class Proxy(ThreadingHTTPServer):
    """A forward HTTP proxy that answers every request itself and records its headers: lets a
    real client "reach" api.stripe.com on loopback without DNS or /etc/hosts changes."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.seen: dict[str, dict[str, str]] = {}  # absolute URL -> request headers
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.seen[self.path] = {k.lower(): v for k, v in self.headers.items()}
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    server = Proxy()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


# -- reading what arrived --------------------------------------------------------------------


def service_of(item: ReceivedSpan | ReceivedLog) -> Any:
    return item.resource.get("service.name")


def flow_spans(
    receiver: OtlpReceiver, flow_id: str, service: str, count: int = 1, **match: Any
) -> list[ReceivedSpan]:
    """Wait for `count` spans of `service` in flow `flow_id` (with `match`: name=, kind=)."""

    def wanted(s: ReceivedSpan) -> bool:
        return (
            s.attributes.get(c.FLOW_ID) == flow_id
            and service_of(s) == service
            and all(getattr(s, k) == v for k, v in match.items())
        )

    return receiver.wait_for_spans(wanted, count=count, timeout=30)


def flow_end(receiver: OtlpReceiver, flow_id: str, service: str) -> ReceivedLog:
    logs = receiver.wait_for_logs(
        lambda r: (
            r.event_name == c.EVENT_FLOW_END
            and r.attributes.get(c.FLOW_ID) == flow_id
            and service_of(r) == service
        ),
        timeout=30,
    )
    # Two records here are a double send (rotel's request timeout is 60 s: OtlpReceiver).
    # Their times and span ids tell which code path emitted each one.
    assert len(logs) == 1, [(r.timestamp_ns, r.span_id, r.attributes) for r in logs]
    return logs[0]


def assert_flow_identity(
    attributes: dict[str, Any], flow_id: str, name: str, tenant: str = TENANT, **labels: str
) -> None:
    """The flow's id, name, tenant and labels, byte-identical."""
    assert attributes[c.FLOW_ID] == flow_id
    assert attributes[c.FLOW_NAME] == name
    assert attributes[c.TENANT] == tenant
    for key, value in (labels or LABELS).items():
        assert attributes[c.label_key(key)] == value, key
