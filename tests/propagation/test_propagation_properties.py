"""Properties of the baggage propagator, for any input hypothesis can think of."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage

from dashfrog_sdk import conventions as c
from dashfrog_sdk.propagation import DashfrogBaggagePropagator, parse_header

KEY = b"0123456789abcdef-property-key"
signer = DashfrogBaggagePropagator(key=KEY)
plain = DashfrogBaggagePropagator()

# Any text but lone surrogates (which no HTTP header and no validated flow value can hold).
values = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
label_keys = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=20)
dashfrog_keys = st.sampled_from([c.FLOW_ID, c.FLOW_NAME, c.TENANT, c.FLOW_PARENT_ID]) | (
    label_keys.map(c.label_key)
)
foreign_keys = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda k: not k.startswith(c.PREFIX)
)
# Whatever arrives in a header: any text (lone surrogates too, as a broken ASGI server may give).
header_text = st.text(max_size=300) | st.lists(
    st.tuples(
        st.sampled_from(["dashfrog.tenant", "dashfrog.sig", "k", " dashfrog.flow.id"]), values
    )
).map(lambda items: ",".join(f"{k}={v}" for k, v in items))


@settings(max_examples=150, deadline=None)
@given(st.lists(header_text, max_size=3), st.booleans())
def test_extract_never_raises(headers: list[str], signed: bool) -> None:
    prop = signer if signed else plain
    ctx = prop.extract({"baggage": headers} if headers else {})
    baggage.get_all(ctx)  # a usable context


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(dashfrog_keys, values | st.text("x", min_size=3000, max_size=5000)),
    st.dictionaries(foreign_keys, values | st.text("y", min_size=100, max_size=900), max_size=200),
    st.booleans(),
)
def test_inject_stays_within_the_w3c_limits(
    ours: dict[str, str], foreign: dict[str, str], signed: bool
) -> None:
    header = (signer if signed else plain).header_for({**ours, **foreign})
    assert len(header.encode()) <= c.BAGGAGE_MAX_BYTES
    members = header.split(",") if header else []
    assert len(members) <= c.BAGGAGE_MAX_MEMBERS
    assert all(len(m.encode()) <= c.BAGGAGE_MAX_MEMBER_BYTES for m in members)
    assert header.isascii()


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(dashfrog_keys, values, min_size=1, max_size=12))
def test_signed_baggage_round_trips(ours: dict[str, str]) -> None:
    header = signer.header_for(ours)
    got = baggage.get_all(signer.extract({"baggage": header}))
    assert dict(got) == ours


# What a single changed byte may become: separators, escapes, case, and the extremes.
REPLACEMENTS = [",", ";", "=", "%", " ", "\t", "0", "9", "A", "a", "F", "f", "-", "_", ".", "\x00"]


@settings(max_examples=15, deadline=None)
@given(
    st.dictionaries(dashfrog_keys, values, min_size=1, max_size=3),
    st.characters(min_codepoint=0, max_codepoint=255),
)
def test_every_single_byte_change_of_a_signed_header_is_rejected(
    ours: dict[str, str], extra: str
) -> None:
    header = signer.header_for(ours)
    assert dict(baggage.get_all(signer.extract({"baggage": header}))) == ours
    for i, original in enumerate(header):
        for byte in {*REPLACEMENTS, extra} - {original}:
            changed = header[:i] + byte + header[i + 1 :]
            got = baggage.get_all(signer.extract({"baggage": changed}))
            assert not [k for k in got if k.startswith(c.PREFIX)], (i, byte, changed)
    assert parse_header(header)[c.BAGGAGE_SIGNATURE].startswith("v1.")
