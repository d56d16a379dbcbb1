"""One query suite, two backends: every test runs on the SQLite store and on ClickHouse (chDB,
the real engine) with the same flows.

The SQLite side is fed by the store's own exporters; the ClickHouse side by the same OTel SDK
pipelines encoded with the OTLP exporter's encoders and mapped to ``otel_traces`` /
``otel_logs`` rows as the collector's ``clickhouse`` exporter maps them
(tests/support/clickhouse.py), then rolled up by the materialized views that
``dashfrog clickhouse init`` creates. The last test runs the real SDK in subprocesses, writing
the SQLite store and exporting OTLP at once, and compares the two backends flow by flow.

Attribute and label values: the exporter stores every attribute as a string, so the suite
compares them as strings (``label_text``) on both sides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from dashfrog_sdk import conventions as c
from dashfrog_sdk.store import FlowNotFoundError, FlowStore
from dashfrog_sdk.store.backend import FlowBackend
from dashfrog_sdk.store.convert import label_text
from tests.store.conftest import Pipe, flowapp_env, run_flowapp
from tests.support.clickhouse import (
    ChDatabase,
    OtlpRowLogExporter,
    OtlpRowSpanExporter,
    log_rows,
    new_database,
    trace_rows,
)
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import wait_until


class ChPipe(Pipe):
    """A Pipe whose records reach ClickHouse as the collector's exporter would write them."""

    def __init__(self, db: ChDatabase, service: str = "api") -> None:
        resource = Resource.create({"service.name": service})
        self.tp = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.tp.add_span_processor(BatchSpanProcessor(OtlpRowSpanExporter(db)))
        self.lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.lp.add_log_record_processor(BatchLogRecordProcessor(OtlpRowLogExporter(db)))
        self.tracer = self.tp.get_tracer(c.SCOPE_NAME)
        self.logger = self.lp.get_logger(c.SCOPE_NAME)


@dataclass
class Backend:
    kind: str
    location: str
    db: ChDatabase | None = None
    pipes: list[Pipe] = field(default_factory=list)

    def pipe(self, service: str = "api") -> Pipe:
        p: Pipe = ChPipe(self.db, service) if self.db is not None else Pipe(self.location, service)
        self.pipes.append(p)
        return p

    def open(self) -> FlowBackend:
        store: FlowBackend = FlowStore(self.location)
        return store

    def close(self) -> None:
        for p in self.pipes:
            p.close()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("chdb"))


@pytest.fixture(params=["sqlite", "chdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, chdb_dir: str) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", str(tmp_path / "flows.db"))
    else:
        db = new_database(chdb_dir)
        b = Backend("chdb", db.url, db)
    yield b
    b.close()


def _labels(flow: Any) -> dict[str, str]:
    return {k: label_text(v) for k, v in flow.labels.items()}


def _attrs(attributes: dict[str, Any]) -> dict[str, str]:
    return {k: label_text(v) for k, v in attributes.items()}


def _order(pipe: Pipe, tenant: str = "acme", fail: bool = False, **labels: Any) -> str:
    try:
        with pipe.flow("order_processing", tenant, region="eu", **labels) as fh:
            with pipe.step(fh, "validate", order_id="o-1", amount=3):
                pipe.log(fh, "validating o-1", step="validate")
                with pipe.step(fh, "check_stock"):
                    pass
            pipe.event(fh, "payment_retried", attempt=2)
            with pipe.step(fh, "charge"):
                if fail:
                    raise ValueError("card declined")
    except ValueError:
        pass
    return fh.id


# -- one flow -----------------------------------------------------------------------------------


def test_completed_flow_steps_events_and_logs(backend: Backend) -> None:
    pipe = backend.pipe()
    flow_id = _order(pipe)
    pipe.flush()
    with backend.open() as store:
        detail = store.flow(flow_id[:10])
    assert (detail.id, detail.name, detail.tenant, detail.status) == (
        flow_id,
        "order_processing",
        "acme",
        "completed",
    )
    assert _labels(detail) == {"region": "eu"} and detail.service == "api"
    assert detail.start_ns is not None and detail.end_ns is not None
    assert detail.duration_ms == pytest.approx((detail.end_ns - detail.start_ns) / 1e6)
    assert [(s.name, s.depth, s.status) for s in detail.steps] == [
        ("validate", 0, "completed"),
        ("check_stock", 1, "completed"),
        ("charge", 0, "completed"),
    ]
    assert _attrs(detail.steps[0].attributes) == {"order_id": "o-1", "amount": "3"}
    assert detail.steps[1].parent_step_id == detail.steps[0].span_id
    assert detail.current_step is None and detail.pending_steps == []
    assert [(e.name, _attrs(e.attributes)) for e in detail.events] == [
        ("payment_retried", {"attempt": "2"})
    ]
    assert [(g.body, g.step_name, g.logger, g.span_id) for g in detail.logs] == [
        ("validating o-1", "validate", "app.orders", detail.steps[0].span_id)
    ]
    durations = store_durations(backend, flow_id)
    assert [s.name for s in durations.steps] == ["validate", "check_stock", "charge"]
    assert all(s.share is not None and 0 <= s.share <= 1 for s in durations.steps)


def store_durations(backend: Backend, flow_id: str) -> Any:
    with backend.open() as store:
        return store.durations(flow_id)


def test_nested_failure_fails_the_flow_once(backend: Backend) -> None:
    pipe = backend.pipe()
    with pytest.raises(KeyError):
        with pipe.flow("import", "globex") as fh:
            with pipe.step(fh, "load"):
                with pipe.step(fh, "parse"):
                    raise KeyError("row 7")
    pipe.flush()
    with backend.open() as store:
        detail = store.flow(fh.id)
        failed = store.flows(status="failed")
        (stats,) = store.stats(tenant="globex")
    assert detail.status == "failed" and detail.error_type == "KeyError"
    assert [(s.name, s.status) for s in detail.steps] == [("load", "failed"), ("parse", "failed")]
    assert [f.id for f in failed] == [fh.id]
    assert (stats.count, stats.failed, stats.completed, stats.failure_rate) == (1, 1, 0, 1.0)


def test_failed_optional_step_keeps_the_flow_completed(backend: Backend) -> None:
    pipe = backend.pipe()
    with pipe.flow("import", "globex") as fh:
        try:
            with pipe.step(fh, "enrich", optional=True):
                raise TimeoutError("geo service down")
        except TimeoutError:
            pass
        with pipe.step(fh, "load"):
            pass
    pipe.flush()
    with backend.open() as store:
        detail = store.flow(fh.id)
        (stats,) = store.stats()
        assert store.flows(status="failed") == []
    assert detail.status == "completed"
    enrich = detail.steps[0]
    assert (enrich.status, enrich.optional, enrich.error_type) == ("failed", True, "TimeoutError")
    assert (stats.failed, stats.completed, stats.failure_rate) == (0, 1, 0.0)


def test_running_flows_with_and_without_a_current_step(backend: Backend) -> None:
    pipe = backend.pipe()
    with pipe.flow("long_job", "initech") as done, pipe.step(done, "prepare"):
        pass
    with pipe.flow("long_job", "initech") as waiting:  # started, no step yet
        with pipe.flow("long_job", "initech") as busy:
            with pipe.step(busy, "prepare"):
                pass
            with pipe.step(busy, "crunch"):
                pipe.flush()
                with backend.open() as store:
                    running = {f.id: f for f in store.flows(status="running")}
                    older = store.flows(running_longer_than=0)
                    detail = store.flow(busy.id)
    assert set(running) == {waiting.id, busy.id}
    assert running[busy.id].current_step == "crunch"
    assert running[waiting.id].current_step is None
    assert {f.id for f in older} == {waiting.id, busy.id}
    assert detail.status == "running" and detail.end_ns is None
    assert detail.current_step == "crunch"
    assert [(s.name, s.status) for s in detail.steps] == [
        ("prepare", "completed"),
        ("crunch", "running"),
    ]


def test_flow_ended_in_another_process(backend: Backend) -> None:
    api, worker = backend.pipe("api"), backend.pipe("worker")
    with api.flow("checkout", "acme", end_on_exit=False) as fh, api.step(fh, "enqueue"):
        pass
    api.flush()
    with backend.open() as store:
        assert store.flow(fh.id).status == "running"
    with worker.tracer.start_as_current_span("celery task", attributes=fh.attrs):
        with worker.step(fh, "ship"):
            pass
        worker.end(fh)
    worker.flush()
    with backend.open() as store:
        detail = store.flow(fh.id)
    assert detail.status == "completed"
    assert detail.start_ns == fh.start_ns  # the true start, from the API
    assert detail.service == "api"
    assert [(s.name, s.service) for s in detail.steps] == [("enqueue", "api"), ("ship", "worker")]
    assert detail.services == ["api", "worker"]
    assert detail.end_ns is not None and detail.end_ns > (detail.steps[-1].start_ns or 0)
    assert [s.name for s in detail.spans] == ["celery task"]


def test_timed_out_flow(backend: Backend) -> None:
    pipe = backend.pipe()
    with pipe.flow("nightly", "umbrella", end_on_exit=False, timeout=0.05) as fh:
        with pipe.step(fh, "export"):
            pass
    pipe.flush()
    with backend.open() as store:
        timed_out = wait_until(lambda: store.flows(status="timed_out"), timeout=10)
        assert [f.id for f in timed_out] == [fh.id]
        assert store.flows(status="running") == []
        (stats,) = store.stats()
    assert timed_out[0].timeout_s == pytest.approx(0.05) and timed_out[0].end_ns is None
    assert (stats.timed_out, stats.running, stats.failure_rate) == (1, 0, 1.0)


def test_child_flows(backend: Backend) -> None:
    pipe = backend.pipe()
    with pipe.flow("order", "acme") as parent:
        with pipe.flow("receipt", "acme", parent=parent) as first:
            pass
        with pipe.flow("receipt", "acme", parent=parent) as second:
            pass
    pipe.flush()
    with backend.open() as store:
        detail = store.flow(parent.id)
        children = store.flows(parent_id=parent.id)
        child = store.flow(second.id)
    assert [f.id for f in detail.children] == [first.id, second.id]
    assert {f.id for f in children} == {first.id, second.id}
    assert child.parent_id == parent.id


def test_filters(backend: Backend) -> None:
    pipe = backend.pipe()
    a = _order(pipe, "acme", priority=1, express=True)
    b = _order(pipe, "acme", fail=True, priority=2)
    g = _order(pipe, "globex", priority=1)
    with pipe.flow("refund", "acme") as refund:
        pass
    pipe.flush()
    with backend.open() as store:

        def ids(**kw: Any) -> list[str]:
            return [f.id for f in store.flows(**kw)]

        assert ids() == [refund.id, g, b, a]  # newest first
        assert ids(tenant="acme") == [refund.id, b, a]
        assert ids(tenant="acme", status="failed") == [b]
        assert ids(status=["failed", "completed"], name="order_processing") == [g, b, a]
        assert ids(labels={"priority": 1}) == [g, a]
        assert ids(labels={"priority": "1", "express": True}) == [a]
        assert ids(labels={"region": "us"}) == []
        assert ids(tenant="nobody") == []
        assert ids(limit=2) == [refund.id, g]
        start = {f.id: f.start_ns or 0 for f in store.flows()}
        between_a_b = (start[a] + start[b]) / 2e9  # unix seconds, as the API takes them
        between_b_g = (start[b] + start[g]) / 2e9
        assert ids(since=between_a_b) == [refund.id, g, b]
        assert ids(until=between_b_g) == [b, a]
        assert ids(since=between_a_b, until=between_b_g) == [b]
        assert ids(since="1h", tenant="globex") == [g]
        assert store.count() == 4


def test_status_precedence_whatever_the_arrival_order(backend: Backend) -> None:
    pipe = backend.pipe()
    # The flow span says completed and arrives first; the end event (failed) arrives after.
    with pipe.flow("checkout", "acme") as late_fail:
        pass
    pipe.flush()
    pipe.end(late_fail, "failed", error=("RuntimeError", "worker lost"))
    # The end event says cancelled and arrives before the span that says completed.
    with pipe.flow("checkout", "acme", end_on_exit=False) as early_cancel:
        pipe.end(early_cancel, "cancelled")
        pipe.flush()
        early_cancel.status = c.COMPLETED
    pipe.flush()
    with backend.open() as store:
        first = store.flow(late_fail.id)
        second = store.flow(early_cancel.id)
        (stats,) = store.stats()
    assert (first.status, first.error_type, first.error_message) == (
        "failed",
        "RuntimeError",
        "worker lost",
    )
    assert second.status == "cancelled"
    assert (stats.count, stats.failed, stats.cancelled, stats.completed) == (2, 1, 1, 0)


def test_stats(backend: Backend) -> None:
    pipe = backend.pipe()
    for _ in range(3):
        _order(pipe, "acme")
    _order(pipe, "acme", fail=True)
    _order(pipe, "globex")
    pipe.flush()
    with backend.open() as store:
        rows = {(r.name, r.tenant): r for r in store.stats(since="1h")}
        flows = store.flows(tenant="acme", status="completed")
        only = store.stats(tenant="globex")
    acme = rows[("order_processing", "acme")]
    assert (acme.count, acme.completed, acme.failed, acme.running) == (4, 3, 1, 0)
    assert acme.failure_rate == pytest.approx(0.25)
    durations = sorted(f.duration_ms or 0 for f in flows)
    assert acme.p50_ms is not None and acme.p95_ms is not None
    assert min(durations) <= acme.p50_ms <= acme.p95_ms
    assert [(r.tenant, r.count) for r in only] == [("globex", 1)]


def test_change_feed(backend: Backend) -> None:
    pipe = backend.pipe()
    with pipe.flow("long_job", "initech") as fh:
        with pipe.step(fh, "prepare"):
            pass
        pipe.flush()
        with backend.open() as store:
            changed, cursor = store.changes(0)
            assert [(f.id, f.status, f.current_step) for f in changed] == [(fh.id, "running", None)]
            assert store.changes(cursor)[0] == []
            with pipe.step(fh, "crunch"):
                pipe.flush()
                changed, cursor = wait_until(
                    lambda: store.changes(cursor)[0] and store.changes(cursor)
                )
                assert [(f.id, f.current_step) for f in changed] == [(fh.id, "crunch")]
    pipe.flush()
    with backend.open() as store:
        changed, _ = store.changes(cursor)
    assert [(f.id, f.status) for f in changed] == [(fh.id, "completed")]


def test_unknown_and_ambiguous_ids(backend: Backend) -> None:
    pipe = backend.pipe()
    for i in range(2):
        with pipe.flow("x", "acme", flow_id=f"ab{i}" + "0" * 29):
            pass
    pipe.flush()
    with backend.open() as store:
        with pytest.raises(FlowNotFoundError, match="ambiguous"):
            store.flow("ab")
        with pytest.raises(FlowNotFoundError, match="no flow"):
            store.flow("ffff")
        assert store.resolve("ab1") == "ab1" + "0" * 29


def test_hostile_strings_are_data(backend: Backend) -> None:
    pipe = backend.pipe()
    tenant = 'x\' OR 1=1 -- \\ {db} "q"'
    with pipe.flow("evil", tenant, note="a'b\\c {where}") as fh:
        pass
    with pipe.flow("evil", "other"):
        pass
    pipe.flush()
    with backend.open() as store:
        assert [f.id for f in store.flows(tenant=tenant)] == [fh.id]
        assert [f.id for f in store.flows(labels={"note": "a'b\\c {where}"})] == [fh.id]
        assert store.flow(fh.id).tenant == tenant
        assert store.flows(tenant="x") == []


# -- progress and artifacts ----------------------------------------------------------------------


def test_progress_of_a_running_step_then_its_last_value(backend: Backend) -> None:
    pipe = backend.pipe()
    with pipe.flow("imports", "acme") as fh:
        with pipe.step(fh, "prepare"):
            pass
        with pipe.step(fh, "import_rows") as span:
            pipe.progress(fh, "import_rows", span, 100, 1000)
            pipe.progress(fh, "import_rows", span, 400, 1000, "loading eu")
            pipe.flush()
            with backend.open() as store:
                _, cursor = store.changes(0)
                (listed,) = store.flows(status="running")
                detail = store.flow(fh.id)
            pipe.progress(fh, "import_rows", span, 900, 1000)
            pipe.flush()
            with backend.open() as store:
                changed, _ = store.changes(cursor)
            pipe.progress(fh, "import_rows", span, 1000, 1000, last=True)
    pipe.flush()
    assert listed.current_step == "import_rows" and listed.current_progress is not None
    assert listed.current_progress.text("import_rows") == "import_rows 40% (400/1000) loading eu"
    assert detail.current_progress == listed.current_progress
    prepare, rows = detail.steps
    assert prepare.progress is None
    assert rows.progress is not None and (rows.progress.done, rows.progress.total) == (400, 1000)
    assert rows.progress.fraction == 0.4
    # A progress update is a change of the flow: `dashfrog tail` and live pages see it.
    assert fh.id in {f.id for f in changed}
    with backend.open() as store:
        ended = store.flow(fh.id)
    assert ended.current_step is None and ended.current_progress is None
    last = ended.steps[1].progress
    assert last is not None and (last.done, last.total, last.message) == (1000, 1000, None)
    assert last.ts_ns == ended.steps[1].end_ns
    # Progress records are no flow events.
    assert ended.events == []


def test_progress_without_a_total(backend: Backend) -> None:
    pipe = backend.pipe()
    with pipe.flow("scan", "acme") as fh, pipe.step(fh, "walk") as span:
        pipe.progress(fh, "walk", span, 2.5)
        pipe.flush()
        with backend.open() as store:
            (flow,) = store.flows(status="running")
    assert flow.current_progress is not None
    assert (flow.current_progress.total, flow.current_progress.message) == (None, None)
    assert flow.current_progress.text("walk") == "walk 2.5"


def test_artifacts_are_stored_with_their_step(backend: Backend) -> None:
    pipe = backend.pipe()
    summary = {"rows": 1000, "rejected": 3, "regions": ["eu", "us"], "ok": True, "ratio": 0.5}
    hostile = "<script>alert(1)</script> \x1b[31m ' OR 1=1 -- {db}"
    with pipe.flow("imports", "acme") as fh:
        with pipe.step(fh, "import_rows") as span:
            pipe.artifact(fh, "import_rows", span, "summary", {"rows": 1})
            pipe.artifact(fh, "import_rows", span, "summary", summary)  # replaces it
            pipe.artifact(fh, "import_rows", span, "note", hostile)
        with pipe.step(fh, "report") as span:
            pipe.artifact(fh, "report", span, "empty", None)
        pipe.event(fh, "done")
    pipe.flush()
    with backend.open() as store:
        detail = store.flow(fh.id)
    rows, report = detail.steps
    # JSON values come back as they were given, on both backends (unlike attributes).
    assert rows.artifacts == {"summary": summary, "note": hostile}
    assert report.artifacts == {"empty": None}
    assert [e.name for e in detail.events] == ["done"]


# -- the real SDK, both backends at once ---------------------------------------------------------


@pytest.fixture(scope="module")
def twin(
    tmp_path_factory: pytest.TempPathFactory, chdb_dir: str
) -> tuple[str, str, dict[str, str]]:
    """The demo flows written by the real SDK in subprocesses (an API, a worker ending a flow it
    did not start, a flow that times out), to the SQLite store and over OTLP at once; the OTLP
    requests then land in chDB as the collector's exporter would write them."""
    sqlite = tmp_path_factory.mktemp("twin") / "flows.db"
    with OtlpReceiver() as receiver:
        otlp = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
        }
        ids = json.loads(run_flowapp("demo", store=sqlite, env=otlp))
        started = json.loads(run_flowapp("start_remote", store=sqlite, env=otlp))
        run_flowapp(
            "finish_remote",
            json.dumps(started["carrier"]),
            store=sqlite,
            service="worker",
            env=otlp,
        )
        ids["remote"] = started["flow_id"]
        ids["timed_out"] = json.loads(run_flowapp("timeout", store=sqlite, env=otlp))["flow_id"]
        ids.update(json.loads(run_flowapp("options", store=sqlite, env=otlp)))
        assert not receiver.errors
        requests = list(receiver.requests)
    db = new_database(chdb_dir)
    for signal, message in requests:
        if signal == "spans":
            db.insert("otel_traces", trace_rows(message))
        elif signal == "logs":
            db.insert("otel_logs", log_rows(message))
    assert flowapp_env  # the same environment helper as the SQLite-only tests
    time.sleep(0.25)  # the 0.2 s timeout of the "timeout" flow passes
    return str(sqlite), db.url, ids


def _comparable(flow: Any) -> tuple[Any, ...]:
    return (
        flow.id,
        flow.name,
        flow.tenant,
        flow.status,
        _labels(flow),
        flow.start_ns,
        flow.end_ns,
        flow.parent_id,
        flow.service,
        flow.trace_id,
        flow.span_id,
        flow.error_type,
        flow.error_message,
        flow.current_step,
    )


def test_real_sdk_flows_read_the_same_on_both_backends(
    twin: tuple[str, str, dict[str, str]],
) -> None:
    sqlite, chdb, ids = twin
    with FlowStore(sqlite) as left, FlowStore(chdb) as right:
        assert [_comparable(f) for f in left.flows()] == [_comparable(f) for f in right.flows()]
        for key, flow_id in ids.items():
            a, b = left.flow(flow_id), right.flow(flow_id)
            assert _comparable(a) == _comparable(b), key
            assert [
                (s.span_id, s.name, s.service, s.status, s.depth, s.start_ns, s.end_ns, s.optional)
                for s in a.steps
            ] == [
                (s.span_id, s.name, s.service, s.status, s.depth, s.start_ns, s.end_ns, s.optional)
                for s in b.steps
            ], key
            assert [(s.error_type, _attrs(s.attributes)) for s in a.steps] == [
                (s.error_type, _attrs(s.attributes)) for s in b.steps
            ], key
            assert [(s.progress, s.artifacts) for s in a.steps] == [
                (s.progress, s.artifacts) for s in b.steps
            ], key
            assert [_comparable(f) for f in a.children] == [_comparable(f) for f in b.children]
            assert [(e.name, e.ts_ns, _attrs(e.attributes)) for e in a.events] == [
                (e.name, e.ts_ns, _attrs(e.attributes)) for e in b.events
            ], key
            assert [(g.ts_ns, g.body, g.severity, g.step_name) for g in a.logs] == [
                (g.ts_ns, g.body, g.severity, g.step_name) for g in b.logs
            ], key
            assert sorted((s.span_id, s.name, s.kind) for s in a.spans) == sorted(
                (s.span_id, s.name, s.kind) for s in b.spans
            ), key
        assert left.stats() == right.stats()
        assert ids["timed_out"] in {f.id for f in right.flows(status="timed_out")}
        load = right.flow(ids["optional"]).steps[1]
        assert load.progress is not None and load.progress.text(load.name) == (
            "load 100% (1000/1000) rows"
        )
        assert load.artifacts == {"summary": {"rows": 1000, "rejected": 3, "note": "<b>ok</b>"}}
        remote = right.flow(ids["remote"])
        assert remote.status == "completed" and remote.services == ["api", "worker"]
        # Steps' options: every attempt is a step on both; a timed-out step reads timed_out.
        for store in (left, right):
            retried, timed_out = store.flow(ids["retried"]), store.flow(ids["step_timed_out"])
            assert (retried.status, timed_out.status) == ("completed", "failed")
            assert [(s.name, s.status) for s in retried.steps] == [
                ("fetch_rates", "failed"),
                ("fetch_rates", "failed"),
                ("fetch_rates", "completed"),
                ("enrich", "failed"),
            ]
            assert [(s.name, s.status) for s in timed_out.steps] == [("crunch", "timed_out")]
            assert [(s.attempt, s.attempts, s.retried) for s in retried.steps[:3]] == [
                (1, 3, True),
                (2, 3, True),
                (3, 3, False),
            ]
            assert retried.steps[0].label == "fetch_rates (attempt 1/3)"
            assert (timed_out.error_type, timed_out.steps[0].error_type) == ("TimeoutError",) * 2


def test_newest_first_across_hours_and_days(backend: Backend) -> None:
    pipe = backend.pipe()
    now = time.time_ns()
    old_ids = []
    for age_s, tenant in ((3 * 3600, "acme"), (2 * 86400, "globex")):
        attrs = {
            c.FLOW_ID: f"{age_s:032x}",
            c.FLOW_NAME: "batch",
            c.TENANT: tenant,
            c.FLOW_STATUS: c.COMPLETED,
        }
        start = now - age_s * 1_000_000_000
        span = pipe.tracer.start_span("flow batch", attributes=attrs, start_time=start)
        span.end(end_time=start + 1_000_000)
        old_ids.append(attrs[c.FLOW_ID])
    with pipe.flow("batch", "acme") as recent:
        pass
    pipe.flush()
    with backend.open() as store:
        assert [f.id for f in store.flows(limit=1)] == [recent.id]
        assert [f.id for f in store.flows(limit=2)] == [recent.id, old_ids[0]]
        assert [f.id for f in store.flows(limit=3)] == [recent.id, *old_ids]
        assert [f.id for f in store.flows(status="completed")] == [recent.id, *old_ids]
        assert [f.id for f in store.flows(since="1d")] == [recent.id, old_ids[0]]
