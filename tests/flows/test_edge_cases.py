"""Edge cases found in review: each would have broken a user's flow status or their program."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import StatusCode

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, step
from dashfrog_sdk.propagation import (
    DashfrogBaggagePropagator,
    destination,
    host_of,
    is_internal_host,
)
from dashfrog_sdk.testing import Capture
from tests.support import ROOT, clean_env


def test_step_failure_upstream_reaches_the_process_that_ends_the_flow(
    dashfrog_capture: Capture,
) -> None:
    prop = DashfrogBaggagePropagator()
    carrier: dict[str, str] = {}
    with flow.start("order", tenant="t", end_on_exit=False):
        try:
            with step.start("validate"):
                raise ValueError("bad order")
        except ValueError:
            pass
        with destination("worker"):
            prop.inject(carrier)  # the task message, sent after the failure
    from dashfrog_sdk import context as ctx_module

    ctx_module._reset_for_tests()  # a worker process has no local state for this flow
    token = otel_context.attach(prop.extract(carrier))
    try:
        assert flow.end() is True
    finally:
        otel_context.detach(token)
    end = dashfrog_capture.events_named(c.EVENT_FLOW_END)[0]
    assert end.attributes[c.FLOW_STATUS] == "failed"


def test_exception_after_flow_end_still_marks_the_span(dashfrog_capture: Capture) -> None:
    with pytest.raises(ValueError), flow.start("a", tenant="t"):
        flow.end()
        raise ValueError("boom")
    f = dashfrog_capture.flow("a")
    assert f.span is not None and f.span.status.status_code == StatusCode.ERROR
    assert [e.name for e in f.span.events] == ["exception"]


def test_steps_inside_an_optional_step_do_not_fail_the_flow(dashfrog_capture: Capture) -> None:
    with flow.start("enrich_order", tenant="t"):
        try:
            with step.start("enrich", optional=True), step.start("fetch"):
                raise TimeoutError("slow")
        except TimeoutError:
            pass
    f = dashfrog_capture.assert_flow("enrich_order", status="completed")
    assert f.step("fetch").status == "failed"


def test_failure_before_cancellation_wins(dashfrog_capture: Capture) -> None:
    with pytest.raises(KeyboardInterrupt), flow.start("a", tenant="t"):
        try:
            with step.start("s"):
                raise ValueError("first")
        except ValueError:
            pass
        raise KeyboardInterrupt
    dashfrog_capture.assert_flow("a", status="failed")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("bad __str__")


def test_exception_whose_str_raises_is_not_replaced(dashfrog_capture: Capture) -> None:
    with pytest.raises(Unprintable), flow.start("a", tenant="t"), step.start("s"):
        raise Unprintable()
    f = dashfrog_capture.assert_flow("a", status="failed")
    assert f.step("s").status == "failed"


def test_generator_functions_cannot_be_decorated() -> None:
    def rows() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="cannot decorate generator function 'rows'"):
        flow.start("a", tenant="t")(rows)
    with pytest.raises(TypeError, match="cannot decorate generator function"):
        step.start("s")(rows)


def test_too_many_step_attributes() -> None:
    with pytest.raises(ValueError, match="step.start\\(\\): at most 64 attributes, got 125"):
        step.start("big", **{f"a{i}": i for i in range(125)})
    with pytest.raises(TypeError, match="attribute 'mixed'"):
        step.start("s", mixed=[1, "x"])


@pytest.mark.parametrize(
    ("dest", "sent"),
    [
        ("[2606:4700::1111]:443", False),
        ("https://[2606:4700::1111]/x", False),
        ("[::1]:8080", True),
        ("fd00::1", True),
        ("10.0.0.7:8080", True),
        ("payments:8000", True),
        ("bad host:1", False),
    ],
)
def test_ipv6_and_odd_destinations(dest: str, sent: bool) -> None:
    prop = DashfrogBaggagePropagator()
    with flow.start("f", tenant="acme-secret"):
        carrier: dict[str, str] = {}
        with destination(dest):
            prop.inject(carrier)
    assert ("acme-secret" in carrier.get("baggage", "")) is sent, (dest, host_of(dest))
    assert not is_internal_host("2606:4700::1111]:443")


def test_bad_variable_does_not_break_business_code() -> None:
    """An explicit setup() raises; the automatic one (first flow) warns once and goes on."""
    code = textwrap.dedent(
        """
        import logging; logging.basicConfig()
        from dashfrog_sdk import flow, step, diagnostics
        for _ in range(3):
            with flow.start("order", tenant="t") as flow_id, step.start("s"):
                pass
        print("ran", diagnostics.counts()["setup.failed"])
        """
    )
    env = clean_env()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "DASHFROG_CONSOLE": "maybe", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ran 1"
    assert proc.stderr.count("automatic setup() failed") == 1
    assert "DASHFROG_CONSOLE must be 'on' or 'off'" in proc.stderr


def test_counters_are_exposed() -> None:
    diagnostics.count("x.test")
    assert diagnostics.counts()["x.test"] == 1
    assert propagate.get_global_textmap() is not None


def test_warnings_reach_stderr_without_logging_config() -> None:
    """The flow-log capture handler on the root logger must not silence dashfrog's warnings."""
    code = "import dashfrog_sdk\ndashfrog_sdk.setup(console=False, store=False)\n"
    code += "dashfrog_sdk.flow.end(); dashfrog_sdk.flow.end()\n"
    env = clean_env()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("flow.end() called outside any flow") == 1
