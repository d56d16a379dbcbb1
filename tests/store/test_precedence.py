"""One final status whatever order a flow's ending records reach the store (dashfrog_sdk.status).

The records are the real SDK's: flows run in this process with the application's providers and
in-memory exporters, the "downstream service" joining the flow from baggage as another process
would. Each ordering is written to a fresh SQLite file through the store's real exporters.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dashfrog_sdk
from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, status, step
from dashfrog_sdk.context import _reset_for_tests
from dashfrog_sdk.propagation import destination
from dashfrog_sdk.store import FlowStore
from dashfrog_sdk.store.exporter import build_exporters
from tests.store.conftest import Pipe

Records = tuple[list[ReadableSpan], list[ReadableLogRecord]]


class App:
    """The application's own providers, capturing in memory; dashfrog attached to them."""

    def __init__(self) -> None:
        resource = Resource.create({"service.name": "api"})
        self.spans, self.logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
        self.tp = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.tp.add_span_processor(SimpleSpanProcessor(self.spans))
        self.lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.lp.add_log_record_processor(SimpleLogRecordProcessor(self.logs))

    def take(self) -> Records:
        """Everything exported since the last call."""
        dashfrog_sdk.flush()
        spans, logs = list(self.spans.get_finished_spans()), list(self.logs.get_finished_logs())
        self.spans.clear()
        self.logs.clear()
        return spans, logs


@pytest.fixture
def app() -> Iterator[App]:
    dashfrog_sdk.shutdown()
    application = App()
    dashfrog_sdk.setup(
        tracer_provider=application.tp,
        logger_provider=application.lp,
        store=False,
        console=False,
        flow_metrics=False,
        handle_sigterm=False,
    )
    yield application
    dashfrog_sdk.shutdown()
    _reset_for_tests()


def as_downstream(carrier: dict[str, str]) -> Any:
    """Attach the context a downstream process extracts from `carrier` (baggage only)."""
    return otel_context.attach(propagate.extract(carrier))


def write(path: Path, parts: Sequence[Records]) -> None:
    span_exporter, log_exporter = build_exporters(str(path))
    for spans, logs in parts:
        if spans:
            span_exporter.export(spans)
        if logs:
            log_exporter.export(logs)
    span_exporter.shutdown()


def test_downstream_failure_wins_whatever_the_order(app: App, tmp_path: Path) -> None:
    """API: a flow that completes (it never hears of the failure). Downstream: flow.fail()."""
    with flow.start("order", tenant="acme") as flow_id:
        with step.start("call_b"):
            carrier: dict[str, str] = {}
            with destination("service-b"):
                propagate.inject(carrier)
            b_started = app.take()  # the API's flow.start and step.start events
            token = as_downstream(carrier)
            try:
                with step.start("charge"):
                    pass
                flow.fail("card declined")
            finally:
                otel_context.detach(token)
            downstream = app.take()
    api = app.take()
    api = (api[0], [*b_started[1], *api[1]])
    assert {s.attributes[c.FLOW_STATUS] for s in api[0] if s.name == "flow order"} == {
        c.COMPLETED
    }  # what the API's span says on its own
    ends = [r.log_record.attributes for r in downstream[1] if r.log_record.event_name]
    assert [a[c.FLOW_STATUS] for a in ends if c.FLOW_STATUS in a] == [c.FAILED]
    flow_span_end = next(s.end_time for s in api[0] if s.name == "flow order")
    fail_end = next(a[c.FLOW_END_TIME] for a in ends if c.FLOW_STATUS in a)

    for n, order in enumerate(itertools.permutations([api, downstream])):
        path = tmp_path / f"order-{n}.db"
        write(path, order)
        with FlowStore(path) as store:
            stored = store.flow(flow_id)
        assert stored.status == c.FAILED, n
        assert (stored.error_type, stored.error_message) == (None, "card declined"), (
            n
        )  # flow.fail("message"): the message alone
        assert stored.end_ns == max(flow_span_end, fail_end), n  # the latest end
        assert stored.service == "api" and [s.name for s in stored.steps] == ["call_b", "charge"]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((c.COMPLETED, c.CANCELLED, c.FAILED), c.FAILED),
        ((c.COMPLETED, c.CANCELLED), c.CANCELLED),
        ((c.COMPLETED, c.COMPLETED), c.COMPLETED),
    ],
)
def test_precedence_of_end_events(statuses: tuple[str, ...], expected: str, tmp_path: Path) -> None:
    """A flow ended by several processes (end_on_exit=False in the API): failed > cancelled >
    completed, whichever end event is written first, and the end is the latest one."""
    for n, order in enumerate(itertools.permutations(statuses)):
        pipe = Pipe(tmp_path / f"order-{n}.db")
        try:
            with pipe.flow("import", "acme", end_on_exit=False) as fh:
                pass
            pipe.flush()
            for value in order:
                error = ("ValueError", "bad row") if value == c.FAILED else None
                pipe.end(fh, value, error=error)
                pipe.flush()  # one record at a time, in this order
            with FlowStore(pipe.writer.path) as store:
                stored = store.flow(fh.id)
                ends = [e.ts_ns for e in stored.events if e.name == c.EVENT_FLOW_END]
        finally:
            pipe.close()
        assert stored.status == expected, order
        if expected == c.FAILED:
            assert (stored.error_type, stored.error_message) == ("ValueError", "bad row"), order
        else:
            assert stored.error_type is None, order
        assert stored.end_ns is not None and stored.end_ns >= max(ends, default=0), order


def test_merge_is_order_free() -> None:
    every = [c.RUNNING, c.COMPLETED, c.CANCELLED, c.FAILED, None]
    for a, b in itertools.product(every, every):
        assert status.merge(a, b) == status.merge(b, a)
    assert status.merge(c.COMPLETED, c.FAILED) == c.FAILED
    assert status.merge(c.CANCELLED, c.COMPLETED) == c.CANCELLED
    assert status.merge(c.RUNNING, c.COMPLETED) == c.COMPLETED
    assert status.merge(None, None) == c.RUNNING
