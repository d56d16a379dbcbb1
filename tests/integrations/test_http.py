"""Flows across HTTP: real uvicorn and werkzeug servers, real requests and httpx calls.

Service B runs in two subprocesses: one with FastAPI and Flask apps that trust incoming flows
and two that do not (`trust_incoming=False`), one that verifies signatures
(`DASHFROG_PROPAGATION_KEY`). The test process is service A.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context

from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, step
from dashfrog_sdk.propagation import DashfrogBaggagePropagator, parse_header
from tests.integrations.conftest import (
    KEY,
    LABELS,
    PYTHON,
    ROOT,
    TENANT,
    Proxy,
    assert_flow_identity,
    flow_spans,
    service_env,
    service_of,
    unique,
)
from tests.support.collector import RotelCollector
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import ManagedProcess, free_port, wait_for_port

CLIENTS = ["requests", "httpx", "httpx-async"]


class Service:
    """One service B process: its name, and the base URL of each app it serves."""

    def __init__(self, name: str, urls: dict[str, str], proc: ManagedProcess) -> None:
        self.name, self.urls, self.proc = name, urls, proc


def _start(collector: RotelCollector, apps: list[str], **env: str) -> Service:
    ports = {app: free_port() for app in apps}
    name = unique("svc-b")
    proc = ManagedProcess(
        [PYTHON, "-m", "tests.integrations.apps.http_service"]
        + [f"{app}={port}" for app, port in ports.items()],
        env=service_env(collector, name, **env),
        cwd=ROOT,
        name=name,
    ).start()
    for port in ports.values():
        wait_for_port("127.0.0.1", port, timeout=30, process=proc)
    return Service(name, {app: f"http://127.0.0.1:{port}" for app, port in ports.items()}, proc)


@pytest.fixture(scope="module")
def plain(collector: RotelCollector) -> Iterator[Service]:
    service = _start(collector, ["fastapi", "flask", "fastapi-untrusted", "flask-untrusted"])
    yield service
    assert service.proc.stop() == 0, service.proc.log_text()


@pytest.fixture(scope="module")
def signing(collector: RotelCollector) -> Iterator[Service]:
    service = _start(collector, ["fastapi", "flask"], DASHFROG_PROPAGATION_KEY=KEY)
    yield service
    assert service.proc.stop() == 0, service.proc.log_text()


def get(
    client: str, url: str, headers: dict[str, str] | None = None, proxy: str | None = None
) -> Any:
    """GET `url` with a real client, in the caller's context; the JSON body."""
    if client == "requests":
        proxies = {"http": proxy} if proxy else None
        response = requests.get(url, headers=headers, proxies=proxies, timeout=20)
        response.raise_for_status()
        return response.json()
    if client == "httpx":
        with httpx.Client(proxy=proxy, timeout=20) as http:
            return http.get(url, headers=headers).raise_for_status().json()

    async def async_get() -> Any:  # asyncio.run copies the caller's context into its task
        async with httpx.AsyncClient(proxy=proxy, timeout=20) as http:
            return (await http.get(url, headers=headers)).raise_for_status().json()

    return asyncio.run(async_get())


def trace_id_here() -> str:
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


# -- a flow joins service B --------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("server", ["fastapi", "flask"])
def test_service_b_joins_the_flow(
    server: str, client: str, plain: Service, service_a: str, receiver: OtlpReceiver
) -> None:
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        with step.start("call_b"):
            seen = get(client, plain.urls[server] + "/work")
        a_trace = trace_id_here()

    # What B's handler saw: A's flow, byte-identical.
    assert seen["flow"] == {
        "id": flow_id,
        "name": "order_processing",
        "tenant": TENANT,
        "labels": LABELS,
    }
    # What B exported: its server span and step span carry the flow, in A's trace.
    b_server = flow_spans(receiver, flow_id, plain.name, kind="SERVER")[0]
    b_step = flow_spans(receiver, flow_id, plain.name, name="step process_payment")[0]
    a_client = flow_spans(receiver, flow_id, service_a, kind="CLIENT")[0]
    for span in (b_server, b_step):
        assert_flow_identity(span.attributes, flow_id, "order_processing")
        assert span.trace_id == a_trace
    assert b_step.attributes[c.STEP_NAME] == "process_payment"
    assert b_server.parent_span_id == a_client.span_id
    assert b_step.parent_span_id == b_server.span_id
    assert a_client.trace_id == a_trace


@pytest.mark.parametrize("server", ["fastapi", "flask"])
def test_signed_peer_is_accepted(
    server: str, signing: Service, service_a: str, receiver: OtlpReceiver
) -> None:
    with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
        seen = get("httpx", signing.urls[server] + "/work")
    assert seen["flow"]["id"] == flow_id
    assert c.BAGGAGE_SIGNATURE in parse_header(seen["baggage"])  # it did arrive signed
    b_step = flow_spans(receiver, flow_id, signing.name, name="step process_payment")[0]
    assert_flow_identity(b_step.attributes, flow_id, "order_processing")
    diag = get("requests", signing.urls[server] + "/diag")
    assert diag.get("baggage.rejected", 0) == 0


# -- a caller from outside cannot forge a flow ----------------------------------------------------

FORGED = {
    c.FLOW_ID: "f" * 32,
    c.FLOW_NAME: "forged",
    c.TENANT: "victim",
    c.label_key("plan"): "victim",
    "user.key": "kept",
}


def _forged_headers() -> dict[str, str]:
    other = DashfrogBaggagePropagator(key=b"not-the-shared-key-at-all").header_for(FORGED)
    ours = DashfrogBaggagePropagator(key=KEY.encode()).header_for(FORGED)
    unsigned = DashfrogBaggagePropagator().header_for(FORGED)
    return {"unsigned": unsigned, "signed-with-another-key": other, "signed-with-our-key": ours}


def _assert_no_victim(receiver: OtlpReceiver, service: str, trace_ids: list[str]) -> None:
    for trace_id in trace_ids:  # wait until B's spans of each forged request are in
        receiver.wait_for_spans(
            lambda s, t=trace_id: s.trace_id == t and service_of(s) == service, 2
        )
    exported = [s.attributes for s in receiver.spans if service_of(s) == service]
    exported += [r.attributes for r in receiver.logs if service_of(r) == service]
    assert exported
    assert not [a for a in exported if "victim" in a.values() or "forged" in a.values()]


@pytest.mark.parametrize("server", ["fastapi-untrusted", "flask-untrusted"])
def test_untrusting_server_ignores_incoming_flows(
    server: str, plain: Service, service_a: str, receiver: OtlpReceiver
) -> None:
    url = plain.urls[server] + "/work"
    before = get("requests", plain.urls[server] + "/diag").get("baggage.untrusted", 0)
    trace_ids = []
    for header in _forged_headers().values():  # even a valid signature: nothing is trusted
        seen = get("requests", url, headers={"baggage": header})
        assert seen["flow"] is None
        assert parse_header(seen["baggage"]) == {"user.key": "kept"}  # others' baggage stays
        trace_ids.append(seen["trace_id"])
    with flow.start("order_processing", tenant=TENANT) as flow_id:  # a real caller's flow too
        seen = get("httpx", url)
    assert seen["flow"] is None
    trace_ids.append(seen["trace_id"])
    _assert_no_victim(receiver, plain.name, trace_ids)
    assert not [
        s
        for s in receiver.spans
        if s.attributes.get(c.FLOW_ID) == flow_id and service_of(s) == plain.name
    ]
    after = get("requests", plain.urls[server] + "/diag")["baggage.untrusted"]
    assert after - before == 4


@pytest.mark.parametrize("server", ["fastapi", "flask"])
def test_signing_server_drops_forged_flows(
    server: str, signing: Service, service_a: str, receiver: OtlpReceiver
) -> None:
    url = signing.urls[server] + "/work"
    before = get("requests", signing.urls[server] + "/diag").get("baggage.rejected", 0)
    headers = _forged_headers()
    trace_ids = []
    for kind in ("unsigned", "signed-with-another-key"):
        seen = get("requests", url, headers={"baggage": headers[kind]})
        assert seen["flow"] is None, kind
        trace_ids.append(seen["trace_id"])
    _assert_no_victim(receiver, signing.name, trace_ids)
    after = get("requests", signing.urls[server] + "/diag")["baggage.rejected"]
    assert after - before == 2


# -- the flow never reaches a host that is not allowed -------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_flow_goes_only_to_allowed_hosts(client: str, proxy: Proxy, service_a: str) -> None:
    # Service A allows "internal,*.partner.example" (see service_a); "user.key" is someone
    # else's baggage, which goes everywhere as before.
    hosts = {
        "http://billing.partner.example/pay": True,
        "http://api.stripe.com/v1/charges": False,
        "http://billing.partner.example.evil.com/pay": False,  # patterns match the whole host
        "http://partner.example/pay": False,
        # 8.8.8.8 as one decimal or hex number: no "single-label internal name"
        "http://134744072/pay": False,
        "http://0x08080808/pay": False,
        "http://0x0a000001/pay": True,  # 10.0.0.1
    }
    token = otel_context.attach(baggage.set_baggage("user.key", "kept"))
    try:
        with flow.start("order_processing", tenant=TENANT, **LABELS) as flow_id:
            for url in hosts:
                get(client, f"{url}?client={client}", proxy=proxy.url)
            after: dict[str, str] = {}
            propagate.inject(after)  # a later hand-written inject: no destination left behind
    finally:
        otel_context.detach(token)
    for url, allowed in hosts.items():
        sent = parse_header(proxy.seen[f"{url}?client={client}"]["baggage"])
        assert sent["user.key"] == "kept"
        if allowed:
            assert sent[c.FLOW_ID] == flow_id and sent[c.TENANT] == TENANT
            assert sent[c.label_key("note")] == LABELS["note"] and c.BAGGAGE_SIGNATURE in sent
        else:
            assert not [k for k in sent if k.startswith("dashfrog.")], (url, sent)
    assert not [k for k in parse_header(after["baggage"]) if k.startswith("dashfrog.")]
