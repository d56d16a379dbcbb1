"""Bad input at the call sites: raise at once naming the argument, or keep locally and warn once."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, step
from dashfrog_sdk.propagation import DashfrogBaggagePropagator, destination, parse_header
from dashfrog_sdk.testing import Capture


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"name": "", "tenant": "t"},
            ValueError,
            "flow.start\\(\\): name must be a non-empty string, got ''",
        ),
        ({"name": "  ", "tenant": "t"}, ValueError, "name must be a non-empty string"),
        ({"name": None, "tenant": "t"}, ValueError, "name must be a non-empty string, got None"),
        ({"name": 42, "tenant": "t"}, TypeError, "name must be a non-empty string, got 42"),
        (
            {"name": "order", "tenant": None},
            ValueError,
            "flow.start\\(\\): tenant must be a non-empty string, got None",
        ),
        ({"name": "order", "tenant": ""}, ValueError, "tenant must be a non-empty string"),
        ({"name": "order", "tenant": 123}, TypeError, "tenant must be a non-empty string, got 123"),
        ({"name": "x" * 300, "tenant": "t"}, ValueError, "name must be at most 256 characters"),
        (
            {"name": "o", "tenant": "t", "customer": None},
            TypeError,
            "label 'customer' must be str, int, float or bool, got NoneType",
        ),
        (
            {"name": "o", "tenant": "t", "items": [1, 2]},
            TypeError,
            "label 'items' must be str, int, float or bool",
        ),
        (
            {"name": "o", "tenant": "t", "ratio": float("nan")},
            ValueError,
            "label 'ratio' must be a finite number",
        ),
        (
            {"name": "o", "tenant": "t", "end_on_exit": "no"},
            TypeError,
            "end_on_exit must be True or False",
        ),
        (
            {"name": "o", "tenant": "t", "timeout": -1},
            ValueError,
            "timeout must be a positive, finite number of seconds",
        ),
    ],
)
def test_flow_start_rejects(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        flow.start(**kwargs)


def test_label_names_that_are_not_baggage_keys() -> None:
    with pytest.raises(ValueError, match="label name 'a b' is not a valid key"):
        flow.start("o", tenant="t", **{"a b": "x"})
    with pytest.raises(ValueError, match="label name 'k=v' is not a valid key"):
        flow.start("o", tenant="t", **{"k=v": "x"})
    with pytest.raises(ValueError, match="may not start with 'dashfrog.'"):
        flow.start("o", tenant="t", **{"dashfrog.tenant": "victim"})


def test_label_colliding_with_a_parameter() -> None:
    # Python itself names the argument: a label cannot be called name/tenant/end_on_exit/timeout.
    with pytest.raises(TypeError, match="multiple values for argument 'name'"):
        flow.start("o", "t", **{"name": "x"})  # type: ignore[misc]


def test_step_rejects() -> None:
    with pytest.raises(ValueError, match="step.start\\(\\): name must be a non-empty string"):
        step.start("")
    with pytest.raises(TypeError, match="step.start\\(\\): optional must be True or False"):
        step.start("s", optional="yes")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match="attribute 'payload' must be str, int, float, bool or a list"
    ):
        step.start("s", payload={"a": 1})
    with pytest.raises(ValueError, match="flow.event\\(\\): name must be a non-empty string"):
        flow.event("")


def test_special_characters_round_trip_through_baggage(dashfrog_capture: Capture) -> None:
    value = "Zürich café, ünïcode; a=b + c%20d 😀"
    prop = DashfrogBaggagePropagator()
    with flow.start("order", tenant="t, with; odd=chars+", city=value) as flow_id:
        carrier: dict[str, str] = {}
        with destination("service-b"):
            prop.inject(carrier)
    assert "+" not in carrier["baggage"].split("dashfrog.label.city=")[1].split(",")[0]
    ctx = prop.extract(carrier)
    assert baggage.get_baggage("dashfrog.label.city", ctx) == value
    assert baggage.get_baggage(c.TENANT, ctx) == "t, with; odd=chars+"
    assert baggage.get_baggage(c.FLOW_ID, ctx) == flow_id
    token = otel_context.attach(ctx)
    try:
        info = flow.current()
    finally:
        otel_context.detach(token)
    assert info is not None and info.labels["city"] == value


def test_large_label_value_kept_locally_and_warned_once(
    dashfrog_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dashfrog_sdk")
    big = "x" * 10_000
    prop = DashfrogBaggagePropagator()
    with flow.start("order", tenant="t", notes=big, region="eu") as flow_id:
        for _ in range(3):
            carrier: dict[str, str] = {}
            with destination("service-b"):
                prop.inject(carrier)
            header = carrier["baggage"]
            assert len(header.encode()) <= c.BAGGAGE_MAX_BYTES
            members = parse_header(header)
            assert members[c.FLOW_ID] == flow_id and members["dashfrog.label.region"] == "eu"
            assert "dashfrog.label.notes" not in members
    f = dashfrog_capture.flow("order")
    assert f.labels["notes"] == big  # the local span keeps it
    assert caplog.text.count("over the W3C limits") == 1
    assert diagnostics.counts()["baggage.dropped"] == 3


def test_three_hundred_labels_raise() -> None:
    labels = {f"label_{i:03d}": f"value-{i}" for i in range(300)}
    with pytest.raises(ValueError, match="flow.start\\(\\): at most 64 labels, got 300"):
        flow.start("wide", tenant="t", **labels)


def test_sixty_four_labels_beyond_baggage_limits(
    dashfrog_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    labels = {f"label_{i:03d}": "v" * 200 for i in range(64)}  # ~14 kB: over 8192 bytes
    prop = DashfrogBaggagePropagator()
    with flow.start("wide", tenant="t", **labels) as flow_id:
        carrier: dict[str, str] = {}
        with destination("service-b"):
            prop.inject(carrier)
    members = parse_header(carrier["baggage"])
    assert len(carrier["baggage"].encode()) <= c.BAGGAGE_MAX_BYTES
    # Identity first: the flow survives when labels are cut.
    assert members[c.FLOW_ID] == flow_id and members[c.TENANT] == "t"
    assert 0 < sum(k.startswith(c.LABEL_PREFIX) for k in members) < 64
    f = dashfrog_capture.flow("wide")
    assert len(f.labels) == 64 and f.id == flow_id  # all kept on local spans
    assert caplog.text.count("over the W3C limits") == 1


def test_unicode_name_and_tenant(dashfrog_capture: Capture) -> None:
    with flow.start("commande_été", tenant="société-générale"):
        pass
    dashfrog_capture.assert_flow("commande_été", tenant="société-générale", status="completed")
