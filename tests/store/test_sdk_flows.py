"""End to end with the real SDK: flows run by `flow`/`step` in real processes land in the store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from dashfrog_sdk.store import FlowStore
from tests.store.conftest import FLOWAPP, ROOT, DemoStore, flowapp_env, run_cli, run_flowapp
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


def test_steps_options_in_the_store_and_the_cli(tmp_path: Path) -> None:
    """Retries (one step per attempt, numbered), raise_on_error=False and a sync step's
    timeout, as the store, `dashfrog flow` (tree, --json, --markdown) show them."""
    store_path = tmp_path / "flows.db"
    ids = json.loads(run_flowapp("options", store=store_path))
    with FlowStore(store_path) as store:
        retried = store.flow(ids["retried"])
        timed_out = store.flow(ids["step_timed_out"])
    assert retried.status == "completed"
    assert [
        (s.name, s.attempt, s.attempts, s.retried, s.status, s.error_message) for s in retried.steps
    ] == [
        ("fetch_rates", 1, 3, True, "failed", "rates service slow #1"),
        ("fetch_rates", 2, 3, True, "failed", "rates service slow #2"),
        ("fetch_rates", 3, 3, False, "completed", None),
        ("enrich", None, None, False, "failed", "geo service down"),
    ]
    assert retried.steps[0].attributes == {"currency": "EUR"}  # options are fields, not inputs
    assert retried.steps[3].raise_on_error is False and not retried.steps[3].failed_flow
    crunch = timed_out.steps[0]
    assert (timed_out.status, crunch.status, crunch.timeout_s) == ("failed", "timed_out", 0.01)
    assert crunch.failed_flow and timed_out.error_type == "TimeoutError"

    env = {"DASHFROG_STORE": str(store_path)}
    tree = run_cli("flow", ids["retried"], env=env)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert any("fetch_rates (attempt 1/3)" in line and "retried" in line for line in lines)
    assert any("fetch_rates (attempt 3/3)" in line for line in lines)
    assert any("enrich" in line and "raise_on_error=False" in line for line in lines)
    steps = json.loads(run_cli("flow", ids["retried"], "--json", env=env).stdout)["steps"]
    assert [(s["attempt"], s["retried"], s["status"]) for s in steps[:3]] == [
        (1, True, "failed"),
        (2, True, "failed"),
        (3, False, "completed"),
    ]
    report = run_cli("flow", ids["step_timed_out"], env=env).stdout
    (line,) = [line for line in report.splitlines() if "crunch" in line and "+" in line]
    assert "⏱ crunch" in line and "(timeout 10.0 ms)" in line  # status.SYMBOLS["timed_out"]
    markdown = run_cli("flow", ids["step_timed_out"], "--markdown", env=env).stdout
    assert "timed out with `TimeoutError: step 'crunch' took" in markdown
    assert "over its timeout of 0.01 s`: the flow failed." in markdown
    markdown = run_cli("flow", ids["retried"], "--markdown", env=env).stdout
    assert "1. `fetch_rates (attempt 1/3)` in `api`" in markdown
    assert "raised `TimeoutError: rates service slow #1`: it was retried." in markdown
    assert "| `fetch_rates (attempt 3/3)` | `api` | ✔ completed |" in markdown


def test_a_running_sync_step_past_its_timeout(tmp_path: Path) -> None:
    """A sync step is never interrupted: while it runs past its timeout, `dashfrog flow` says so;
    once it returns it is recorded timed_out, and its flow failed."""
    store_path, gate = tmp_path / "flows.db", tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, str(FLOWAPP), "hold", str(gate), "0.2"],
        env=flowapp_env(store_path, "batch"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    env = {"DASHFROG_STORE": str(store_path)}
    try:
        assert proc.stdout is not None
        flow_id = json.loads(proc.stdout.readline())["flow_id"]

        def crunch_running() -> bool:
            if not store_path.exists():
                return False
            with FlowStore(store_path) as store:
                try:
                    detail = store.flow(flow_id)
                except LookupError:
                    return False
            current = detail.current
            return current is not None and current.name == "crunch" and current.timeout_s == 0.2

        wait_until(crunch_running, timeout=15, message="crunch not running in the store")

        def says_past() -> bool:
            return "past its timeout" in run_cli("flow", flow_id, env=env).stdout

        wait_until(says_past, timeout=15, message="the CLI does not say crunch is past it")
        gate.write_text("go")
        assert proc.wait(timeout=30) == 0

        def ended() -> str | None:
            with FlowStore(store_path) as store:
                detail = store.flow(flow_id)
            return None if detail.status == "running" else detail.status

        assert wait_until(ended, timeout=15) == "failed"
        with FlowStore(store_path) as store:
            crunch = next(s for s in store.flow(flow_id).steps if s.name == "crunch")
        assert (crunch.status, crunch.error_type) == ("timed_out", "TimeoutError")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
