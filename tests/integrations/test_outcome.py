"""A flow that fails in a downstream HTTP service fails the caller's flow (dashfrog_sdk.outcome).

Service A is the test process (signing with KEY, see conftest.service_a); service B runs real
uvicorn/werkzeug servers in a subprocess. Both export to the collector, and both also write
one local SQLite flow store, as two services of one machine would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, step
from dashfrog_sdk.outcome import HEADER
from dashfrog_sdk.propagation import encode_member, sign
from dashfrog_sdk.setup import installed_providers
from dashfrog_sdk.store import FlowStore
from dashfrog_sdk.store.exporter import build_processors
from dashfrog_sdk.store.queries import FlowNotFoundError, StoreNotFoundError
from tests.integrations.conftest import KEY, LABELS, TENANT, flow_spans
from tests.integrations.test_http import CLIENTS, Service, _start, get
from tests.support.collector import RotelCollector
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import wait_until

# How B fails the flow, and the error A's flow span must end with.
HOWS = {
    "caught": ("ValueError", "card exploded"),  # a failed step whose exception B catches
    "raise": ("ValueError", "card exploded"),  # the step's exception escapes: HTTP 500
    "flow": ("ValueError", "card declined"),  # flow.fail(error)
    "surrogate": ("ValueError", "card \ufffd exploded"),  # caught, a lone surrogate in it
}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outcome") / "flows.db"


@pytest.fixture(scope="module")
def a_store(service_a: str, store_path: Path) -> str:
    """Service A also writes the local store (its providers are shut down with the module)."""
    providers = installed_providers()
    assert providers is not None
    spans, logs = build_processors(str(store_path), max_age_s=None, max_flows=None)
    providers[0].add_span_processor(spans)
    providers[1].add_log_record_processor(logs)
    return service_a


@pytest.fixture(scope="module")
def b_signing(collector: RotelCollector, store_path: Path) -> Iterator[Service]:
    """B shares A's key: it verifies A's baggage and signs what it reports back."""
    service = _start(
        collector,
        ["fastapi", "flask", "fastapi-untrusted", "flask-untrusted"],
        DASHFROG_PROPAGATION_KEY=KEY,
        DASHFROG_STORE=str(store_path),
    )
    yield service
    assert service.proc.stop() == 0, service.proc.log_text()


@pytest.fixture(scope="module")
def b_keyless(collector: RotelCollector) -> Iterator[Service]:
    """B without the key: it accepts A's flow, but cannot sign what it reports back."""
    service = _start(collector, ["fastapi", "flask"])
    yield service
    assert service.proc.stop() == 0, service.proc.log_text()


def call(client: str, url: str) -> None:
    """GET `url` inside a step of A; an HTTP error fails that step, and is caught after it."""
    try:
        with step.start("call_b"):
            get(client, url)
    except Exception as exc:
        assert "500" in str(exc), exc


def a_flow_span(receiver: OtlpReceiver, flow_id: str, service: str) -> Any:
    return flow_spans(receiver, flow_id, service, name="flow order_processing")[0]


def stored(path: Path, flow_id: str, a_service: str, b_service: str | None) -> Any:
    """The flow as the shared store has it: ended, started by `a_service` (its records are
    in), with a step of `b_service` if given."""

    def ready() -> Any:
        try:
            with FlowStore(path) as store:
                detail = store.flow(flow_id)
        except (FlowNotFoundError, StoreNotFoundError):
            return None
        services = {s.service for s in detail.steps}
        b_in = b_service is None or b_service in services
        return detail if detail.ended and detail.service == a_service and b_in else None

    return wait_until(ready, timeout=30)


@pytest.mark.parametrize("how", sorted(HOWS))
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("server", ["fastapi", "flask"])
def test_downstream_failure_fails_the_callers_flow(
    server: str,
    client: str,
    how: str,
    b_signing: Service,
    a_store: str,
    receiver: OtlpReceiver,
    store_path: Path,
) -> None:
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        call(client, f"{b_signing.urls[server]}/fail/{how}")
    error_type, message = HOWS[how]
    # A's own flow span ended failed with B's error: every OTLP backend shows it.
    span = a_flow_span(receiver, flow_id, a_store)
    assert span.attributes[c.FLOW_STATUS] == c.FAILED
    assert span.status_code == "ERROR"
    assert (span.attributes[c.ERROR_TYPE], span.attributes[c.ERROR_MESSAGE]) == (
        error_type,
        message,
    )
    assert span.status_message == f"{error_type}: {message}"
    # B recorded the failure under the flow's id too (for a caller whose flow ends elsewhere).
    ends = receiver.wait_for_logs(
        lambda r: (
            r.event_name == c.EVENT_FLOW_END
            and r.attributes.get(c.FLOW_ID) == flow_id
            and r.resource.get("service.name") == b_signing.name
        ),
        timeout=30,
    )
    assert [e.attributes[c.FLOW_STATUS] for e in ends] == [c.FAILED]
    assert ends[0].attributes[c.ERROR_MESSAGE] == message
    # The store: one flow, failed, with A's and B's steps.
    detail = stored(store_path, flow_id, a_store, None if how == "flow" else b_signing.name)
    assert detail.status == c.FAILED
    assert (detail.error_type, detail.error_message) == (error_type, message)


def test_failure_after_the_response_reaches_the_store(
    b_signing: Service, a_store: str, receiver: OtlpReceiver, store_path: Path
) -> None:
    """A FastAPI background task fails the flow after the response went out: too late for the
    caller's span, not for the record B keeps under the flow's id."""
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        call("httpx", f"{b_signing.urls['fastapi']}/fail/background")
    span = a_flow_span(receiver, flow_id, a_store)
    assert span.attributes[c.FLOW_STATUS] == c.COMPLETED  # it could not know
    stored(store_path, flow_id, a_store, b_signing.name)

    def failed() -> Any:
        with FlowStore(store_path) as store:
            detail = store.flow(flow_id)
        return detail if detail.status == c.FAILED else None

    detail = wait_until(failed, timeout=30)
    assert (detail.error_type, detail.error_message) == ("ValueError", "card exploded")


@pytest.mark.parametrize("server", ["fastapi", "flask"])
def test_optional_downstream_failure_does_not(
    server: str, b_signing: Service, a_store: str, receiver: OtlpReceiver
) -> None:
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        call("httpx", f"{b_signing.urls[server]}/fail/optional")
    span = a_flow_span(receiver, flow_id, a_store)
    assert span.attributes[c.FLOW_STATUS] == c.COMPLETED and span.status_code != "ERROR"
    b_step = flow_spans(receiver, flow_id, b_signing.name, name="step charge")[0]
    assert b_step.attributes[c.STEP_STATUS] == c.FAILED  # B's optional step did fail
    assert not [
        r
        for r in receiver.logs
        if r.event_name == c.EVENT_FLOW_END and r.attributes.get(c.FLOW_ID) == flow_id
    ]


@pytest.mark.parametrize("server", ["fastapi-untrusted", "flask-untrusted"])
def test_untrusting_server_reports_nothing(
    server: str, b_signing: Service, a_store: str, receiver: OtlpReceiver
) -> None:
    """trust_incoming=False: B never joined A's flow, so it has nothing to say about it."""
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        call("requests", f"{b_signing.urls[server]}/fail/caught")
    span = a_flow_span(receiver, flow_id, a_store)
    assert span.attributes[c.FLOW_STATUS] == c.COMPLETED


@pytest.mark.parametrize("server", ["fastapi", "flask"])
def test_unsigned_report_is_ignored_by_a_signing_caller(
    server: str, b_keyless: Service, a_store: str, receiver: OtlpReceiver
) -> None:
    """A signs its baggage; B has no key, so its report back is unsigned: A does not take it.
    B's own failure record still reaches the backends (it is B's data)."""
    before = diagnostics.counts().get("outcome.rejected", 0)
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        call("requests", f"{b_keyless.urls[server]}/fail/caught")
    assert diagnostics.counts()["outcome.rejected"] == before + 1
    span = a_flow_span(receiver, flow_id, a_store)
    assert span.attributes[c.FLOW_STATUS] == c.COMPLETED


class Forger(ThreadingHTTPServer):
    """A forward proxy answering for any host with a validly signed failure report for the
    flow named in the query: what a host outside DASHFROG_PROPAGATE_TO might send."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ForgerHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class ForgerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        flow_id = parse_qs(urlsplit(self.path).query)["flow"][0]
        members = [
            (c.FLOW_ID, flow_id),
            (c.FLOW_STATUS, c.FAILED),
            (c.ERROR_TYPE, "Forged"),
            (c.ERROR_MESSAGE, "forged"),
        ]
        value = ",".join(encode_member(k, v) for k, v in members)
        value += "," + encode_member(c.BAGGAGE_SIGNATURE, sign(members, KEY.encode()))
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header(HEADER, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def forger() -> Iterator[Forger]:
    server = Forger()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("client", CLIENTS)
def test_report_from_a_host_the_flow_is_not_sent_to_is_ignored(
    client: str, forger: Forger, a_store: str, receiver: OtlpReceiver
) -> None:
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        with step.start("call_stripe"):
            get(client, f"http://api.stripe.com/v1/charges?flow={flow_id}", proxy=forger.url)
    span = a_flow_span(receiver, flow_id, a_store)
    assert span.attributes[c.FLOW_STATUS] == c.COMPLETED
