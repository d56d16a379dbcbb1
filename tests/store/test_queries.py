"""The query API over stores fed through the real exporters and batch processors."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dashfrog_sdk import conventions as c
from dashfrog_sdk.store import (
    Flow,
    FlowDetail,
    FlowNotFoundError,
    FlowStore,
    StoreNotFoundError,
)
from tests.store.conftest import Pipe


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


def test_completed_flow_with_steps_in_order(pipe: Pipe, store_path: Path) -> None:
    flow_id = _order(pipe)
    pipe.flush()
    with FlowStore(store_path) as store:
        detail = store.flow(flow_id)
    assert isinstance(detail, FlowDetail)
    assert (detail.name, detail.tenant, detail.status) == ("order_processing", "acme", "completed")
    assert detail.labels == {"region": "eu"}
    assert detail.service == "api"
    assert detail.end_ns is not None and detail.start_ns is not None
    assert detail.duration_ms == pytest.approx((detail.end_ns - detail.start_ns) / 1e6)
    assert [s.name for s in detail.steps] == ["validate", "check_stock", "charge"]
    validate, stock, charge = detail.steps
    assert validate.attributes == {"order_id": "o-1", "amount": 3}
    assert (validate.depth, stock.depth, charge.depth) == (0, 1, 0)
    assert stock.parent_step_id == validate.span_id
    assert all(s.status == "completed" and s.service == "api" for s in detail.steps)
    assert all(s.duration_ms is not None and s.duration_ms >= 0 for s in detail.steps)
    assert detail.current_step is None and detail.current is None
    assert [(e.name, e.attributes) for e in detail.events] == [("payment_retried", {"attempt": 2})]
    assert [(entry.body, entry.step_name, entry.logger) for entry in detail.logs] == [
        ("validating o-1", "validate", "app.orders")
    ]
    assert detail.logs[0].span_id == validate.span_id
    assert detail.start == datetime.fromtimestamp(detail.start_ns / 1e9, tz=timezone.utc)


def test_failed_step_fails_the_flow_with_its_error(pipe: Pipe, store_path: Path) -> None:
    flow_id = _order(pipe, fail=True)
    pipe.flush()
    with FlowStore(store_path) as store:
        detail = store.flow(flow_id)
        listed = store.flows(status="failed")
    assert detail.status == "failed"
    assert (detail.error_type, detail.error_message) == ("ValueError", "card declined")
    charge = detail.steps[-1]
    assert (charge.status, charge.error_type, charge.error_message) == (
        "failed",
        "ValueError",
        "card declined",
    )
    assert [f.id for f in listed] == [flow_id]


def test_running_flow_shows_its_current_step(pipe: Pipe, store_path: Path) -> None:
    with pipe.flow("import", "acme") as fh:
        with pipe.step(fh, "download"):
            pass
        with pipe.step(fh, "parse"):
            pipe.flush()  # the step.start event is out, the step span is not
            with FlowStore(store_path) as store:
                running = store.flow(fh.id)
                listed = store.flows(status="running")
    assert running.status == "running"
    assert running.current_step == "parse"
    assert [s.status for s in running.steps] == ["completed", "running"]
    assert running.end_ns is None and running.duration_ms is not None
    assert [(f.id, f.current_step) for f in listed] == [(fh.id, "parse")]
    pipe.flush()
    with FlowStore(store_path) as store:
        done = store.flow(fh.id)
    assert (done.status, done.current_step) == ("completed", None)
    assert [s.status for s in done.steps] == ["completed", "completed"]


def test_flow_ended_in_another_service(store_path: Path) -> None:
    api, worker = Pipe(store_path, "api"), Pipe(store_path, "worker")
    try:
        with api.flow("checkout", "acme", end_on_exit=False) as fh, api.step(fh, "enqueue"):
            pass
        api.flush()
        with FlowStore(store_path) as store:
            assert store.flow(fh.id).status == "running"
        with worker.tracer.start_as_current_span("celery task", attributes=fh.attrs):
            with worker.step(fh, "ship"):
                pass
            worker.end(fh)
        worker.flush()
        with FlowStore(store_path) as store:
            detail = store.flow(fh.id)
    finally:
        api.close()
        worker.close()
    assert detail.status == "completed"
    assert detail.start_ns == fh.start_ns  # the true start, from the API
    assert detail.service == "api"
    assert [(s.name, s.service) for s in detail.steps] == [("enqueue", "api"), ("ship", "worker")]
    assert detail.services == ["api", "worker"]
    assert detail.end_ns is not None and detail.end_ns > detail.steps[-1].start_ns  # type: ignore[operator]
    assert [s.name for s in detail.spans] == ["celery task"]


def test_end_event_before_the_running_span_still_ends_the_flow(
    pipe: Pipe, store_path: Path
) -> None:
    with pipe.flow("checkout", "acme", end_on_exit=False, start_event=False) as fh:
        pipe.end(fh, "failed", error=("KeyError", "sku"))
        pipe.log_processor.force_flush()  # the end event lands first
    pipe.flush()  # then the flow span, which says "running"
    with FlowStore(store_path) as store:
        detail = store.flow(fh.id)
    assert detail.status == "failed"
    assert (detail.error_type, detail.error_message) == ("KeyError", "sku")
    assert detail.start_ns == fh.start_ns


def test_timeout_without_end_is_timed_out(pipe: Pipe, store_path: Path) -> None:
    with pipe.flow("nightly", "acme", end_on_exit=False, timeout=0.05) as late:
        pass
    with pipe.flow("nightly", "acme", end_on_exit=False, timeout=0.05) as ended:
        pipe.end(ended)
    with pipe.flow("nightly", "acme", end_on_exit=False, timeout=3600) as patient:
        pass
    pipe.flush()
    time.sleep(0.06)
    with FlowStore(store_path) as store:
        assert store.flow(late.id).status == c.TIMED_OUT
        assert store.flow(ended.id).status == "completed"
        assert store.flow(patient.id).status == "running"
        assert [f.id for f in store.flows(status="timed_out")] == [late.id]
        assert [f.id for f in store.flows(status="running")] == [patient.id]
        both = {f.id for f in store.flows(status=["running", "timed_out"])}
        assert both == {late.id, patient.id}
        assert store.flow(late.id).timeout_s == 0.05


def test_filters(pipe: Pipe, store_path: Path) -> None:
    a = _order(pipe, "acme", vip=True, tier=1)
    b = _order(pipe, "acme", fail=True, tier=2)
    with pipe.flow("data_import", "globex", source="s3") as g:
        pass
    with pipe.flow("data_import", "globex", end_on_exit=False) as stuck:
        pass
    pipe.flush()
    with FlowStore(store_path) as store:

        def ids(**kw: object) -> list[str]:
            return [f.id for f in store.flows(**kw)]  # type: ignore[arg-type]

        assert ids(tenant="acme") == [b, a]
        assert ids(tenant="acme", status="completed") == [a]
        assert ids(name="data_import") == [stuck.id, g.id]
        assert ids(labels={"vip": True}) == [a]
        assert ids(labels={"tier": 2}) == [b]
        assert ids(labels={"region": "eu", "tier": "1"}) == [a]
        assert ids(labels={"source": "s3"}) == [g.id]
        assert ids(labels={"source": "gcs"}) == []
        assert ids(limit=2) == [stuck.id, g.id]
        assert len(ids(limit=None)) == 4
        assert ids(since=timedelta(hours=1), tenant="globex") == [stuck.id, g.id]
        assert ids(since=timedelta(seconds=-60)) == []  # "since" in the future
        assert ids(until=datetime(2000, 1, 1)) == []
        assert ids(since=time.time() - 60, until=time.time() + 60, status="failed") == [b]
        assert ids(running_longer_than=0) == [stuck.id]
        assert ids(running_longer_than=timedelta(hours=1)) == []
        flows = store.flows(tenant="acme")
        assert all(isinstance(f, Flow) for f in flows)
        assert store.count() == 4


def test_child_flows_and_parent(pipe: Pipe, store_path: Path) -> None:
    with (
        pipe.flow("order", "acme") as outer,
        pipe.step(outer, "notify"),
        pipe.flow("send_email", "acme", parent=outer) as child,
    ):
        pass
    pipe.flush()
    with FlowStore(store_path) as store:
        detail = store.flow(outer.id)
        assert [f.id for f in detail.children] == [child.id]
        assert store.flow(child.id).parent_id == outer.id
        assert [f.id for f in store.flows(parent_id=outer.id)] == [child.id]


def test_durations(pipe: Pipe, store_path: Path) -> None:
    flow_id = _order(pipe)
    pipe.flush()
    with FlowStore(store_path) as store:
        result = store.durations(flow_id)
    assert result.flow_id == flow_id and result.duration_ms is not None
    assert [s.name for s in result.steps] == ["validate", "check_stock", "charge"]
    for s in result.steps:
        assert s.share is not None and 0 <= s.share <= 1
    assert set(result.by_step()) == {"validate", "check_stock", "charge"}


def test_stats(pipe: Pipe, store_path: Path) -> None:
    for _ in range(3):
        _order(pipe, "acme")
    _order(pipe, "acme", fail=True)
    _order(pipe, "globex")
    with pipe.flow("order_processing", "acme", end_on_exit=False):
        pass
    pipe.flush()
    with FlowStore(store_path) as store:
        rows = store.stats()
        recent = store.stats(since=timedelta(minutes=5), tenant="globex")
        with FlowStore(store_path) as again:
            durations = sorted(
                f.duration_ms or 0
                for f in again.flows(tenant="acme", status=["completed", "failed"])
            )
    acme = next(r for r in rows if r.tenant == "acme")
    assert (acme.name, acme.count, acme.running, acme.completed, acme.failed) == (
        "order_processing",
        5,
        1,
        3,
        1,
    )
    assert acme.failure_rate == pytest.approx(1 / 4)  # the running flow has not ended
    assert acme.p50_ms == pytest.approx((durations[1] + durations[2]) / 2)
    assert acme.p95_ms is not None and durations[2] <= acme.p95_ms <= durations[3]
    assert [(r.tenant, r.count, r.failure_rate) for r in recent] == [("globex", 1, 0.0)]


def test_id_prefix_and_unknown_ids(pipe: Pipe, store_path: Path) -> None:
    a = _order(pipe)
    pipe.flush()
    with FlowStore(store_path) as store:
        assert store.flow(a[:8]).id == a
        assert store.flow(a.upper()).id == a
        with pytest.raises(FlowNotFoundError, match="no flow"):
            store.flow("ffff" if not a.startswith("ffff") else "0000")
        with pytest.raises(FlowNotFoundError):
            store.flow("")


def test_ambiguous_prefix(pipe: Pipe, store_path: Path) -> None:
    with pipe.flow("x", "t", flow_id="ab" + "1" * 30):
        pass
    with pipe.flow("x", "t", flow_id="ab" + "2" * 30):
        pass
    pipe.flush()
    with FlowStore(store_path) as store, pytest.raises(FlowNotFoundError, match="ambiguous"):
        store.flow("ab")


def test_records_without_a_flow_are_ignored(pipe: Pipe, store_path: Path) -> None:
    with pipe.tracer.start_as_current_span("unrelated"):
        pipe.emit(None, {"k": "v"}, body="not in a flow")
    with pipe.flow("x", "t"):
        pass
    pipe.flush()
    with FlowStore(store_path) as store:
        assert store.count() == 1
        assert store.flow(store.flows()[0].id).spans == []


def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        FlowStore(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_to_dataframe(pipe: Pipe, store_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    flow_id = _order(pipe)
    _order(pipe, fail=True)
    pipe.flush()
    with FlowStore(store_path) as store:
        frame = store.flows().to_dataframe()
        steps = store.flow(flow_id).to_dataframe()
        stats = store.stats().to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 2 and {"id", "status", "tenant", "start", "duration_ms"} <= set(frame)
    assert sorted(frame["status"]) == ["completed", "failed"]
    assert list(steps["name"]) == ["validate", "check_stock", "charge"]
    assert stats.loc[0, "count"] == 2


def test_time_arguments_accept_cli_style_strings(pipe: Pipe, store_path: Path) -> None:
    flow_id = _order(pipe, tenant="strings")
    pipe.flush()
    with FlowStore(store_path) as store:
        assert [f.id for f in store.flows(tenant="strings", since="1h")] == [flow_id]
        assert store.flows(tenant="strings", until="1h") == []
        assert store.flows(tenant="strings", running_longer_than="10m") == []
        with pytest.raises(ValueError, match="not a time"):
            store.flows(since="yesterday-ish")
