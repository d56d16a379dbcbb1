"""End to end with the real SDK: flows run by `flow`/`step` in real processes land in the store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from dashfrog_sdk.store import FlowStore
from tests.store.conftest import FLOWAPP, ROOT, DemoStore, flowapp_env, run_flowapp
from tests.support.procs import wait_until


def test_demo_flows(demo_store: DemoStore) -> None:
    ids = demo_store.ids
    with FlowStore(demo_store.path) as store:
        done = store.flow(ids["completed"])
        failed = store.flow(ids["failed"])
        optional = store.flow(ids["optional"])
        child = store.flow(ids["child"])
    assert done.status == "completed" and done.tenant == "acme-corp"
    assert done.labels == {"region": "eu", "priority": "2"}  # the core sends labels as text
    assert [(s.name, s.depth, s.status) for s in done.steps] == [
        ("validate_order", 0, "completed"),
        ("check_stock", 1, "completed"),
        ("charge", 0, "completed"),
    ]  # the child flow's step ("render") is the child's
    assert done.steps[0].attributes == {"order_id": "o-1", "amount": 42.5}
    assert [e.name for e in done.events] == ["payment_retried"]
    assert done.events[0].attributes == {"attempt": 2}
    assert [(entry.body, entry.step_name, entry.severity) for entry in done.logs] == [
        ("validating order o-1", "validate_order", "INFO"),
        ("card network slow", "charge", "WARN"),
    ]
    assert [c.id for c in done.children] == [ids["child"]]
    assert child.parent_id == ids["completed"] and [s.name for s in child.steps] == ["render"]

    assert failed.status == "failed"
    assert (failed.error_type, failed.error_message) == ("ValueError", "card declined; code #51")
    assert [(s.name, s.status) for s in failed.steps] == [
        ("validate_order", "completed"),
        ("charge", "failed"),
    ]
    assert optional.status == "completed"
    enrich = optional.steps[0]
    assert (enrich.name, enrich.status, enrich.optional, enrich.error_type) == (
        "enrich",
        "failed",
        True,
        "TimeoutError",
    )
    # A tight progress loop: its last value on the step, its artifact with it.
    load = optional.steps[1]
    assert load.progress is not None
    assert (load.progress.done, load.progress.total, load.progress.message) == (1000, 1000, "rows")
    assert load.artifacts == {"summary": {"rows": 1000, "rejected": 3, "note": "<b>ok</b>"}}


def test_flow_ended_by_another_process(demo_store: DemoStore) -> None:
    with FlowStore(demo_store.path) as store:
        detail = store.flow(demo_store.ids["remote"])
    assert detail.status == "completed"
    assert detail.service == "api"
    assert [(s.name, s.service) for s in detail.steps] == [
        ("reserve", "api"),
        ("enqueue", "api"),
        ("ship", "worker"),
    ]
    ship = detail.steps[-1]
    assert ship.parent_step_id == detail.steps[1].span_id  # sent from inside "enqueue"
    assert detail.services == ["api", "worker"]
    assert detail.end_ns is not None and ship.end_ns is not None
    assert detail.end_ns >= ship.end_ns
    assert detail.start_ns is not None and detail.start_ns <= detail.steps[0].start_ns  # type: ignore[operator]


def test_timed_out_flow(demo_store: DemoStore) -> None:
    with FlowStore(demo_store.path) as store:
        detail = store.flow(demo_store.ids["timed_out"])
        assert [f.id for f in store.flows(status="timed_out")] == [demo_store.ids["timed_out"]]
    assert detail.status == "timed_out" and detail.timeout_s == 0.2


def test_running_flow_and_its_current_step(tmp_path: Path) -> None:
    store_path, gate = tmp_path / "flows.db", tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, str(FLOWAPP), "hold", str(gate)],
        env=flowapp_env(store_path, "batch"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        flow_id = json.loads(proc.stdout.readline())["flow_id"]

        def current() -> str | None:
            if not store_path.exists():
                return None
            with FlowStore(store_path) as store:
                try:
                    detail = store.flow(flow_id)
                except LookupError:
                    return None
                return detail.current_step if detail.status == "running" else None

        assert wait_until(current, timeout=15, message="no running step in the store") == "crunch"
        gate.write_text("go")
        assert proc.wait(timeout=30) == 0

        def finished() -> bool:
            with FlowStore(store_path) as store:
                return store.flow(flow_id).status == "completed"

        wait_until(finished, timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_two_processes_write_one_store_at_once(tmp_path: Path) -> None:
    store_path = tmp_path / "shared.db"
    errors: list[str] = []

    def writer(tag: str) -> None:
        try:
            run_flowapp("many", "300", tag, store=store_path, service=tag, timeout=120)
        except AssertionError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("api", "worker")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with FlowStore(store_path) as store:
        flows = store.flows(limit=None)
        assert len(flows) == 600
        assert {f.status for f in flows} == {"completed"}
        per_writer = {
            tag: len(store.flows(labels={"writer": tag}, limit=None)) for tag in ("api", "worker")
        }
        assert per_writer == {"api": 300, "worker": 300}
        sample = store.flow(flows[0].id)
        assert [s.name for s in sample.steps] == ["a", "b", "c"]
    import sqlite3

    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 1800
        assert (
            conn.execute("SELECT COUNT(*) FROM steps WHERE status != 'completed'").fetchone()[0]
            == 0
        )
