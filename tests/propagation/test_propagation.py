"""The propagator's rules, in-process (the integrations tests prove them over real HTTP/brokers)."""

from __future__ import annotations

import pytest
from opentelemetry import baggage

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow
from dashfrog_sdk.propagation import (
    DashfrogBaggagePropagator,
    destination,
    host_allowed,
    is_internal_host,
    parse_header,
    strip_dashfrog_members,
)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "192.168.0.4",
        "172.20.0.9",
        "169.254.1.1",
        "::1",
        "[fd00::1]",
        "service-b",
        "payments.local",
        "db.internal",
        "api.default.svc",
        "api.default.svc.cluster.local",
    ],
)
def test_internal_hosts(host: str) -> None:
    assert is_internal_host(host)


@pytest.mark.parametrize(
    "host",
    ["api.stripe.com", "8.8.8.8", "example.com", "evil.internal.example.com", "localhost.evil.com"],
)
def test_external_hosts(host: str) -> None:
    assert not is_internal_host(host)


def test_patterns_are_anchored_on_the_host() -> None:
    patterns = ("internal", "*.corp.example")
    assert host_allowed("billing.corp.example", patterns)
    assert not host_allowed("billing.corp.example.evil.com", patterns)
    assert not host_allowed("corp.example", patterns)
    assert host_allowed("api.stripe.com", ("*",))
    assert not host_allowed("10.0.0.1", ("none",))


def _inject(prop: DashfrogBaggagePropagator, dest: str | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    if dest is None:
        prop.inject(carrier)
    else:
        with destination(dest):
            prop.inject(carrier)
    return carrier


def test_outgoing_allowlist() -> None:
    prop = DashfrogBaggagePropagator()
    from opentelemetry import context as otel_context

    token = otel_context.attach(baggage.set_baggage("user.key", "kept"))
    try:
        with flow.start("order", tenant="customer-123"):
            internal = parse_header(_inject(prop, "http://service-b:8000/pay")["baggage"])
            external = parse_header(_inject(prop, "https://api.stripe.com/v1/charges")["baggage"])
            unknown = parse_header(_inject(prop, None)["baggage"])
    finally:
        otel_context.detach(token)
    assert internal[c.TENANT] == "customer-123" and internal["user.key"] == "kept"
    assert not any(k.startswith("dashfrog.") for k in external) and external["user.key"] == "kept"
    assert not any(k.startswith("dashfrog.") for k in unknown)
    assert diagnostics.counts()["baggage.withheld"] == 2


def test_signing_round_trip_and_forgery() -> None:
    key = b"0123456789abcdef-secret"
    signer = DashfrogBaggagePropagator(key=key)
    with flow.start("order", tenant="customer-123") as flow_id:
        carrier = _inject(signer, "service-b")
    assert c.BAGGAGE_SIGNATURE in parse_header(carrier["baggage"])
    ctx = signer.extract(carrier)
    assert baggage.get_baggage(c.FLOW_ID, ctx) == flow_id
    assert baggage.get_baggage(c.BAGGAGE_SIGNATURE, ctx) is None  # internal member, not exposed

    forged = {"baggage": carrier["baggage"].replace("customer-123", "victim")}
    assert baggage.get_baggage(c.TENANT, signer.extract(forged)) is None
    unsigned = {"baggage": "dashfrog.tenant=victim,dashfrog.flow.id=abc,user.key=ok"}
    ctx = signer.extract(unsigned)
    assert baggage.get_baggage(c.TENANT, ctx) is None
    assert baggage.get_baggage("user.key", ctx) == "ok"
    other_key = DashfrogBaggagePropagator(key=b"another-key-of-16-bytes")
    assert baggage.get_baggage(c.TENANT, other_key.extract(carrier)) is None
    assert diagnostics.counts()["baggage.rejected"] == 3


def test_strip_dashfrog_members() -> None:
    header = "dashfrog.tenant=victim,user.key=v;prop=1,dashfrog%2Eflow.id=x, other=2"
    assert strip_dashfrog_members(header) == "user.key=v;prop=1, other=2"


def test_oversized_incoming_header_is_ignored() -> None:
    members = parse_header("k=" + "v" * 9000)
    assert members == {}
    assert diagnostics.counts()["baggage.incoming_too_large"] == 1
