"""The public lifecycle events API (`dashfrog_sdk.events`): typed events, in order, off the
flow's thread; remove; a raising sink is counted and warned about once, never breaks others."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

import dashfrog_sdk
from dashfrog_sdk import LifecycleEvent, events, flow, step
from dashfrog_sdk.testing import Capture
from tests.support.procs import wait_until


@pytest.fixture
def received(dashfrog_capture: Capture) -> Iterator[list[LifecycleEvent]]:
    got: list[LifecycleEvent] = []
    events.add_sink(got.append)
    yield got
    events.remove_sink(got.append)


def test_events_arrive_typed_and_in_order(received: list[LifecycleEvent]) -> None:
    with flow.start("order", tenant="acme", region="eu") as flow_id:
        with step.start("charge", amount=42):
            pass
        with pytest.raises(ValueError), step.start("ship"):
            raise ValueError("no courier")
        flow.event("note", n=1)
    with pytest.raises(ValueError):
        raise ValueError("x")
    dashfrog_sdk.flush()
    mine = [e for e in received if e.flow_id == flow_id]
    assert [(e.kind, e.step, e.status) for e in mine] == [
        (events.FLOW_START, None, None),
        (events.STEP_START, "charge", None),
        (events.STEP_END, "charge", "completed"),
        (events.STEP_START, "ship", None),
        (events.STEP_END, "ship", "failed"),
        (events.FLOW_EVENT, None, None),
        (events.FLOW_CLOSE, None, "failed"),
    ]
    for event in mine:
        assert isinstance(event, LifecycleEvent) and not isinstance(event, tuple)
        assert (event.flow_name, event.tenant, event.labels) == ("order", "acme", {"region": "eu"})
        assert len(event.trace_id) == 32 and len(event.span_id) == 16
    ship = mine[4]
    assert (ship.error_type, ship.error_message) == ("ValueError", "no courier")
    assert isinstance(ship.exception, ValueError) and ship.duration_ns > 0
    assert (mine[5].event_name, dict(mine[5].attributes)) == ("note", {"n": 1})
    assert mine[-1].ends_flow and mine[-1].error_type == "ValueError"
    # Every kind but a flow ended elsewhere and a step's progress and artifacts (not made here).
    unmade = {events.FLOW_END, events.STEP_PROGRESS, events.STEP_ARTIFACT}
    assert {e.kind for e in mine} | unmade == set(events.KINDS)


def test_sinks_run_off_the_flow_thread(received: list[LifecycleEvent]) -> None:
    threads: set[str] = set()

    def where(event: LifecycleEvent) -> None:
        threads.add(threading.current_thread().name)

    events.add_sink(where)
    try:
        with flow.start("order", tenant="t") as flow_id:
            pass
        wait_until(lambda: any(e.flow_id == flow_id and e.ends_flow for e in received))
    finally:
        events.remove_sink(where)
    assert threads == {"dashfrog-events"}


def test_remove_sink_stops_the_calls(received: list[LifecycleEvent]) -> None:
    later: list[LifecycleEvent] = []
    events.add_sink(later.append)
    events.add_sink(later.append)  # once
    with flow.start("first", tenant="t"):
        pass
    dashfrog_sdk.flush()
    events.remove_sink(later.append)
    events.remove_sink(later.append)  # no-op
    with flow.start("second", tenant="t"):
        pass
    dashfrog_sdk.flush()
    assert [e.kind for e in later] == [events.FLOW_START, events.FLOW_CLOSE]
    assert {e.flow_name for e in received} == {"first", "second"}


def test_a_raising_sink_is_counted_warned_once_and_breaks_nothing(
    received: list[LifecycleEvent], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("sink exploded")

    events.add_sink(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="dashfrog_sdk"):
            for _ in range(3):
                with flow.start("order", tenant="t"), step.start("s"):
                    pass
            dashfrog_sdk.flush()
    finally:
        events.remove_sink(broken)
    assert len([e for e in received if e.flow_name == "order"]) == 12  # the others got all
    assert dashfrog_sdk.stats()["diagnostics"]["events.sink_errors"] == 12
    warnings = [r for r in caplog.records if "sink" in r.getMessage()]
    assert len(warnings) == 1 and "sink exploded" in warnings[0].getMessage()


def test_a_sink_must_be_callable() -> None:
    with pytest.raises(TypeError, match="sink must be a callable"):
        events.add_sink("print")  # type: ignore[arg-type]
