"""The propagator under attack, in-process: host forms, `none`, the signature, refusal counters.

(tests/integrations/test_security.py proves the same rules over real HTTP.)
"""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.propagators.ot_trace import OTTracePropagator

import dashfrog_sdk
from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk.config import load
from dashfrog_sdk.propagation import (
    DashfrogBaggagePropagator,
    ForeignBaggageGuard,
    canonical_host,
    destination,
    encode_member,
    host_allowed,
    is_internal_host,
    parse_header,
    sign,
)

KEY = b"0123456789abcdef-secret"


@pytest.mark.parametrize(
    ("form", "ip"),
    [
        ("134744072", "8.8.8.8"),
        ("0x08080808", "8.8.8.8"),
        ("0X08080808", "8.8.8.8"),
        ("010.010.010.010", "8.8.8.8"),  # octal
        ("8.526344", "8.8.8.8"),  # a.b
        ("8.8.2056", "8.8.8.8"),  # a.b.c
        ("0x8.0x8.0x8.0x8", "8.8.8.8"),
        ("8.8.8.8.", "8.8.8.8"),
        ("[::ffff:8.8.8.8]", "8.8.8.8"),
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
    ],
)
def test_numeric_host_forms_are_their_ip(form: str, ip: str) -> None:
    assert canonical_host(form) == ip
    assert is_internal_host(form) == is_internal_host(ip)
    assert host_allowed(form, ("internal",)) == is_internal_host(ip)
    assert host_allowed(form, (ip,))  # a pattern naming the IP matches every spelling


@pytest.mark.parametrize("host", ["cafe", "0x", "1.2.3.4 x", "08.1", "dead.beef", "service-b"])
def test_names_that_are_not_ip_literals_stay_names(host: str) -> None:
    assert canonical_host(host) == host


def test_none_means_nowhere() -> None:
    for host in ("none", "127.0.0.1", "service-b", "api.stripe.com"):
        assert not host_allowed(host, ("none",))
    prop = DashfrogBaggagePropagator(("none",))
    with dashfrog_sdk.flow.start("order", tenant="acme"):
        carrier: dict[str, str] = {}
        with destination("http://none/"):
            prop.inject(carrier)
    assert not [k for k in parse_header(carrier.get("baggage", "")) if k.startswith("dashfrog.")]
    with pytest.raises(ValueError, match="'none' means nowhere"):
        load(propagate_to="none,internal")


def test_max_age_setting() -> None:
    assert load().propagation_max_age_s == 7 * 86400
    assert load(propagation_max_age="2h").propagation_max_age_s == 7200
    assert load(propagation_max_age="off").propagation_max_age_s is None
    with pytest.raises(ValueError, match="propagation_max_age"):
        load(propagation_max_age="soon")
    with pytest.raises(ValueError, match="propagation_max_age"):
        load(propagation_max_age=-5)


def _header(members: dict[str, str], key: bytes = KEY, at: float | None = None) -> str:
    items = list(members.items())
    return ",".join(
        [encode_member(k, v) for k, v in items]
        + [encode_member(c.BAGGAGE_SIGNATURE, sign(items, key, now=at))]
    )


def _ours(ctx: Context) -> dict[str, object]:
    return {k: v for k, v in baggage.get_all(ctx).items() if k.startswith(c.PREFIX)}


def test_a_signed_value_cannot_be_resplit_into_another_member() -> None:
    # One signed label whose value holds what the old format used as separators ("\n", "=").
    legit = {c.FLOW_ID: "a" * 32, c.label_key("x"): "a\ndashfrog.tenant=victim"}
    header = DashfrogBaggagePropagator(key=KEY).header_for(legit)
    sig = parse_header(header)[c.BAGGAGE_SIGNATURE]
    resplit = {c.FLOW_ID: "a" * 32, c.label_key("x"): "a", c.TENANT: "victim"}
    forged = ",".join(encode_member(k, v) for k, v in resplit.items())
    forged += "," + encode_member(c.BAGGAGE_SIGNATURE, sig)
    verifier = DashfrogBaggagePropagator(key=KEY)
    assert _ours(verifier.extract({"baggage": header})) == legit
    assert _ours(verifier.extract({"baggage": forged})) == {}


def test_signature_format_and_age() -> None:
    members = {c.FLOW_ID: "b" * 32, c.TENANT: "acme"}
    header = _header(members)
    version, stamp, mac = parse_header(header)[c.BAGGAGE_SIGNATURE].split(".")
    assert version == "v1" and abs(int(stamp) - time.time()) < 5 and len(mac) == 43
    strict = DashfrogBaggagePropagator(key=KEY, max_age_s=60)
    assert _ours(strict.extract({"baggage": header})) == members
    assert _ours(strict.extract({"baggage": _header(members, at=time.time() - 120)})) == {}
    lenient = DashfrogBaggagePropagator(key=KEY, max_age_s=None)
    assert _ours(lenient.extract({"baggage": _header(members, at=time.time() - 10**8)})) == members
    assert diagnostics.counts() == {"baggage.expired": 1}


def test_each_refusal_is_counted_with_one_warning_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = DashfrogBaggagePropagator(key=KEY)
    members = {c.FLOW_ID: "c" * 32, c.TENANT: "acme"}
    guard = ForeignBaggageGuard(JaegerPropagator(), "jaeger")
    jaeger = {"uber-trace-id": f"{'a' * 32}:{'b' * 16}:0:1", "uberctx-dashfrog.tenant": "x"}
    caplog.set_level(logging.WARNING, "dashfrog_sdk")
    for _ in range(2):
        verifier.extract({"baggage": "dashfrog.tenant=victim"})  # unsigned
        verifier.extract({"baggage": "dashfrog.tenant=victim,dashfrog.sig=\xe9"})  # malformed
        verifier.extract({"baggage": _header(members, at=time.time() - 8 * 86400)})  # expired
        assert _ours(guard.extract(jaeger)) == {}  # foreign propagator
        carrier = {"baggage": _header(members) + ",user.key=kept"}  # a redirect hop's copy
        with dashfrog_sdk.flow.start("order", tenant="acme"), destination("api.stripe.com"):
            verifier.inject(carrier)
        assert parse_header(carrier["baggage"]) == {"user.key": "kept"}
    assert diagnostics.counts() == {
        "baggage.rejected": 4,
        "baggage.expired": 2,
        "baggage.foreign_dropped": 2,
        "baggage.redirect_withheld": 2,
        "baggage.withheld": 2,
    }
    warned = [r.getMessage() for r in caplog.records if r.name == "dashfrog_sdk"]
    assert len(warned) == 4, warned  # one a kind; withheld (the allowlist at work) is silent


def test_foreign_propagators_never_see_dashfrog_members() -> None:
    for inner in (JaegerPropagator(), OTTracePropagator()):
        guard = ForeignBaggageGuard(inner, type(inner).__name__)
        with dashfrog_sdk.flow.start("order", tenant="acme"):
            ctx = baggage.set_baggage("user.key", "kept")
            carrier: dict[str, str] = {}
            guard.inject(carrier, ctx)
        assert not [k for k in carrier if "dashfrog" in k], carrier
