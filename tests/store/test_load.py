"""The store under load and under trouble: bursts, huge flows, a writer that cannot keep up,
its file deleted or replaced, a full disk, and `dashfrog tail` following thousands of changes.

Real processes (``flowapp.py`` drives the real SDK), real SQLite files, a real small filesystem.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk._otel.attributes import plain, span_attributes
from dashfrog_sdk.store import FlowStore, StoreWriter, schema
from dashfrog_sdk.store.convert import Batch, FlowRow, add_log_record, add_span
from dashfrog_sdk.store.exporter import build_exporters
from dashfrog_sdk.store.processor import DROPPED, FLOWS_DROPPED
from tests.store.conftest import FLOWAPP, Pipe, flowapp_env, run_cli, run_flowapp
from tests.support import ROOT


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


# -- bursts -------------------------------------------------------------------------------------


def test_a_burst_of_flows_is_stored_in_full(tmp_path: Path) -> None:
    """Flows as fast as a loop makes them: every one stored, ended, with its steps (main kept
    about half, a third of those shown as running)."""
    store = tmp_path / "flows.db"
    out = run_flowapp("many", "10000", "burst", store=store, timeout=300)
    diagnostics_out = json.loads(out.strip().splitlines()[-1])
    assert _rows(store, "SELECT status, COUNT(*) FROM flows GROUP BY status") == [
        ("completed", 10000)
    ]
    assert _rows(store, "SELECT COUNT(*) FROM steps WHERE status = 'completed'") == [(30000,)]
    assert _rows(store, "SELECT COUNT(*) FROM flow_labels WHERE key = 'n'") == [(10000,)]
    assert DROPPED not in diagnostics_out and FLOWS_DROPPED not in diagnostics_out


def test_a_flow_with_many_steps_keeps_every_step(tmp_path: Path) -> None:
    store = tmp_path / "flows.db"
    out = run_flowapp("steps", "30000", store=store, timeout=300)
    assert DROPPED not in json.loads(out.strip().splitlines()[-1])
    assert _rows(store, "SELECT name, status FROM flows") == [("huge", "completed")]
    assert _rows(store, "SELECT COUNT(*) FROM steps WHERE status = 'completed'") == [(30000,)]


def test_a_writer_that_cannot_keep_up_drops_whole_flows_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store is locked (another process holds it) while flows keep coming: past the bound
    whole flows are dropped, counted, warned about once; none is left looking `running`."""
    diagnostics.reset()
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "flows.db"
    holder = sqlite3.connect(StoreWriter(str(path)).path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE hold (x)")
    holder.execute("BEGIN IMMEDIATE")
    p = Pipe(path, max_queue=40)
    produced = 300
    with caplog.at_level(logging.WARNING, logger="dashfrog_sdk"):
        try:
            for i in range(produced):
                with p.flow("busy", "acme", n=i) as fh:
                    with p.step(fh, "a"):
                        pass
                    with p.step(fh, "b"):
                        pass
            assert not p.tp.force_flush(5_000)  # the store is still locked
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        p.flush()
    p.close()
    counts = diagnostics.counts()
    dropped = counts.get(FLOWS_DROPPED, 0)
    assert dropped > 0 and counts.get(DROPPED, 0) > 0
    with FlowStore(path) as store:
        flows = store.flows(limit=None)
    assert len(flows) + dropped == produced
    assert {f.status for f in flows} == {c.COMPLETED}
    assert _rows(path, "SELECT COUNT(*) FROM steps") == [(2 * len(flows),)]
    warned = [r for r in caplog.records if "dropping flows" in r.getMessage()]
    assert len(warned) == 1


def _recorded(flows: int) -> tuple[list[Any], list[Any]]:
    """Spans and log records of real SDK flows, captured in memory."""
    import dashfrog_sdk
    from dashfrog_sdk import flow, step

    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tp, lp = TracerProvider(), LoggerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    dashfrog_sdk.shutdown()  # whatever an earlier test in this process set up
    dashfrog_sdk.setup(tracer_provider=tp, logger_provider=lp, store=False, console=False)
    try:
        for i in range(flows):
            with flow.start("coalesce", tenant=f"t{i % 3}", n=i, vip=i % 2 == 0):
                with step.start("a", order=i):
                    flow.event("poked", n=i)
                try:
                    with step.start("b"):
                        if i % 4 == 0:
                            raise ValueError("no")
                except ValueError:
                    pass
        with flow.start("open", tenant="t", end_on_exit=False):
            with step.start("left"):
                pass
        dashfrog_sdk.flush(10)
    finally:
        dashfrog_sdk.shutdown()
    recorded = list(spans.get_finished_spans()), list(logs.get_finished_logs())
    # Every span; the events the SDK sends (start events of flows that ended before they were
    # exported are not sent: see the Data model), flow.event ones included.
    assert len(recorded[0]) > 3 * flows and len(recorded[1]) >= flows
    return recorded


# What a store holds of the records written, table by table (not seen_ns: a write's stamp).
STORED = {
    "flows": "SELECT flow_id, name, tenant, parent_id, status, start_ns, end_ns, timeout_s, "
    "deadline_ns, end_on_exit, trace_id, span_id, service, error_type, error_message, "
    "labels FROM flows ORDER BY flow_id",
    "steps": "SELECT * FROM steps ORDER BY span_id",
    "labels": "SELECT * FROM flow_labels ORDER BY flow_id, key",
    "events": "SELECT flow_id, name, ts_ns, attributes FROM events ORDER BY flow_id, ts_ns",
}


def test_coalesced_writes_equal_row_by_row_writes(tmp_path: Path) -> None:
    """The writer folds each batch's rows per flow and per step: the store must end up exactly
    as if each record had been upserted alone, in either arrival order."""
    spans, logs = _recorded(12)
    tables = STORED
    results = []
    for order in ("logs first", "spans first"):
        items = [*logs, *spans] if order == "logs first" else [*spans, *logs]
        one = tmp_path / f"one-{order}.db"
        span_x, log_x = build_exporters(str(one))
        for item in items:  # one record per transaction: no coalescing possible
            if item in spans:
                assert span_x.export([item]).name == "SUCCESS"
            else:
                assert log_x.export([item]).name == "SUCCESS"
        span_x.shutdown()
        folded = tmp_path / f"folded-{order}.db"
        writer, batch = StoreWriter(str(folded)), Batch()
        for item in items:
            (add_span if item in spans else add_log_record)(batch, item)
        assert writer.write(batch)
        writer.close()
        for table, sql in tables.items():
            assert _rows(one, sql) == _rows(folded, sql), (order, table)
        results.append(_rows(folded, tables["flows"]))
    assert results[0] == results[1]


def test_records_in_any_order_and_any_batches_equal_row_by_row_writes(tmp_path: Path) -> None:
    """The converter's shortcut (convert._flow_seen: a known flow's "exists" records fold into
    its last row) and the writer's coalescing, for records shuffled and cut into random
    batches: the store equals one upsert per record."""
    import random

    spans, logs = _recorded(10)
    tables = {
        **STORED,
        "tails": "SELECT * FROM flow_tails WHERE n != 0 ORDER BY 1, 2, 3, 4, 5",
    }
    for seed in range(4):
        rng = random.Random(seed)
        items = [*spans, *logs]
        rng.shuffle(items)
        one = tmp_path / f"one-{seed}.db"
        span_x, log_x = build_exporters(str(one))
        for item in items:  # one record per transaction
            exporter: Any = span_x if item in spans else log_x
            assert exporter.export([item]).name == "SUCCESS"
        span_x.shutdown()
        cut = tmp_path / f"cut-{seed}.db"
        writer = StoreWriter(str(cut))
        i = 0
        while i < len(items):
            n = rng.randrange(1, 30)
            batch = Batch()
            for item in items[i : i + n]:
                (add_span if item in spans else add_log_record)(batch, item)
            assert writer.write(batch)
            i += n
        writer.close()
        for table, sql in tables.items():
            assert _rows(one, sql) == _rows(cut, sql), (seed, table)


def test_plain_attributes_equal_the_public_mapping() -> None:
    spans, logs = _recorded(2)
    for span in spans:
        assert dict(span_attributes(span)) == dict(span.attributes or {})
    for record in logs:
        assert dict(plain(record.log_record.attributes)) == dict(record.log_record.attributes or {})


# -- the store file deleted or replaced ----------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_store_file_is_reopened(tmp_path: Path, how: str) -> None:
    store = tmp_path / "flows.db"
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, str(FLOWAPP), "phases", "20", str(gate)],
        env=flowapp_env(store, "api"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["phase"] == 1
        assert _rows(store, "SELECT COUNT(*) FROM flows") == [(20,)]
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        if how == "replaced":  # e.g. a backup restored over it: a store with one old flow
            writer = StoreWriter(str(store))
            assert writer.write(Batch(flows=[FlowRow("f" * 32, name="restored", tenant="t")]))
            writer.close()
        gate.touch()
        second = json.loads(proc.stdout.readline())
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert second["stats"].get("store.reopened") == 1
    expected = [("phased", 20)] + ([("restored", 1)] if how == "replaced" else [])
    assert _rows(store, "SELECT name, COUNT(*) FROM flows GROUP BY name ORDER BY name") == expected
    assert _rows(store, "SELECT value FROM flow_labels WHERE key = 'phase' GROUP BY value") == [
        ("2",)
    ]
    assert err.count("deleted or replaced") == 1


# -- a full disk ---------------------------------------------------------------------------------


def _small_filesystem_runner() -> list[str] | None:
    """A command prefix that runs a command with a 1 MiB tmpfs at /mnt/dashfrog-full... in a
    private mount namespace (unprivileged user namespaces, or root), or None if not possible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run(
        [unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && echo ok"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [unshare, "-rm"] if probe.stdout.strip() == "ok" else None


def test_a_full_disk_is_named_in_the_warning(tmp_path: Path) -> None:
    runner = _small_filesystem_runner()
    if runner is None:
        pytest.skip("cannot mount a small tmpfs here (needs unshare and user namespaces)")
    mount = tmp_path / "small"
    mount.mkdir()
    store = mount / "flows.db"
    script = f"mount -t tmpfs -o size=1m tmpfs {mount} && exec {sys.executable} {FLOWAPP} fill 2000"
    env = flowapp_env(store, "api")
    env["DASHFROG_SHUTDOWN_TIMEOUT"] = "1"
    proc = subprocess.run(
        [*runner, "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "write failed" in line]
    assert len(warnings) == 1, proc.stderr
    assert "database or disk is full" in warnings[0]
    assert "cannot rollback" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]).get("store.write_errors", 0) >= 1


# -- dashfrog tail -------------------------------------------------------------------------------


def test_tail_shows_every_flow_of_a_big_write(tmp_path: Path) -> None:
    """Thousands of flows changed in one write (main showed the first 1,000, then froze)."""
    store = tmp_path / "flows.db"
    now = time.time_ns()
    writer = StoreWriter(str(store))
    flows = [
        FlowRow(
            f"{i:032x}",
            name="bulk",
            tenant="acme",
            status="completed",
            start_ns=now - 10**9,
            end_ns=now,
            service="api",
        )
        for i in range(4500)
    ]
    assert writer.write(Batch(flows=flows))
    writer.close()
    out = run_cli("tail", "--once", "--since", "1h", "--store", str(store))
    assert out.returncode == 0, out.stderr
    ended = [line for line in out.stdout.splitlines() if "completed" in line]
    assert len(ended) == 4500


# -- retention ------------------------------------------------------------------------------------


def test_retention_deletes_in_short_slices_and_gives_space_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An oversized store is trimmed a slice per transaction (main deleted everything in one,
    57 s for 902,000 flows, past every other writer's busy timeout), and the file shrinks."""
    from dashfrog_sdk.store import writer as writer_module

    monkeypatch.setattr(writer_module, "RETENTION_SLICE", 500)
    path = tmp_path / "flows.db"
    big = StoreWriter(str(path))
    for first in range(0, 3000, 500):
        assert big.write(Batch(flows=_bulky(first, 500)))
    big.close()
    size_before = path.stat().st_size
    trimmed = StoreWriter(str(path), max_flows=100, retention_every_flows=1)
    assert trimmed.write(Batch(flows=_bulky(3000, 1)))  # the write that triggers a pass
    assert _rows(path, "SELECT COUNT(*) FROM flows") == [(2501,)]  # one slice, not all
    assert trimmed.apply_retention() == 2401  # the rest, slice by slice
    trimmed.close()
    with FlowStore(path) as store:
        kept = store.flows(limit=None)
    assert len(kept) == 100 and f"{3000:032x}" in {f.id for f in kept}
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size < size_before / 4


def _bulky(first: int, count: int) -> list[FlowRow]:
    return [
        FlowRow(
            f"{i:032x}",
            name="bulky",
            tenant="acme",
            status="completed",
            start_ns=i,
            end_ns=i + 1,
            error_message="x" * 2000,
        )
        for i in range(first, first + count)
    ]


# -- start-up -------------------------------------------------------------------------------------


def _python(code: str, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=flowapp_env(store, "api"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_cli_loads_none_of_the_opentelemetry_sdk(tmp_path: Path) -> None:
    """Most of `dashfrog --version` (339 ms on main) was importing the SDK it never uses."""
    code = (
        "import sys, dashfrog_sdk.cli\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))\n"
        "print(loaded)\n"
    )
    out = _python(code, tmp_path / "flows.db")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_flow_set_up_through_a_submodule_import_alone_is_stored(tmp_path: Path) -> None:
    """The package loads its API lazily: `dashfrog_sdk.flow` alone must still set up the SDK
    from the environment on the first flow."""
    store = tmp_path / "flows.db"
    code = (
        "import dashfrog_sdk.flow as flow, dashfrog_sdk.step as step\n"
        "with flow.start('lazy', tenant='acme'):\n"
        "    with step.start('s'):\n"
        "        pass\n"
    )
    out = _python(code, store)
    assert out.returncode == 0, out.stderr
    assert _rows(store, "SELECT name, status FROM flows") == [("lazy", "completed")]


# -- queries at scale: the fast paths answer what the plain ones did -------------------------------


def _varied_store(path: Path) -> None:
    import random

    rng = random.Random(7)
    now = time.time_ns()
    flows = []
    for i in range(3000):
        start = now - rng.randrange(0, 3 * 86400) * 10**9
        roll = rng.random()
        status = "completed" if roll < 0.7 else "failed" if roll < 0.85 else "cancelled"
        if roll > 0.95:
            status = "running"
        flows.append(
            FlowRow(
                f"{i:032x}",
                name=rng.choice(("a", "b", "c")),
                tenant=f"t{rng.randrange(40)}",  # some groups of one or two flows
                status=status,
                start_ns=start,
                end_ns=None if status == "running" else start + rng.randrange(1, 50) * 10**6,
                timeout_s=rng.choice((None, 1.0, 10**6)),
                service="api",
                labels={"region": rng.choice(("eu", "us")), "rare": "x"}
                if i % 500 == 0
                else {"region": rng.choice(("eu", "us"))},
            )
        )
    writer = StoreWriter(str(path))
    assert writer.write(Batch(flows=flows))
    writer.close()


def test_stats_in_sql_equal_the_python_aggregate(tmp_path: Path) -> None:
    from dashfrog_sdk.store.aggregate import aggregate

    path = tmp_path / "flows.db"
    _varied_store(path)
    with FlowStore(path) as store:
        for since, tenant in ((None, None), ("1d", None), (None, "t3")):
            got = store.stats(since=since, tenant=tenant)
            now = time.time_ns()
            sql = "SELECT name, tenant, status, start_ns, end_ns, deadline_ns FROM flows WHERE 1"
            params: list[Any] = []
            if since:
                sql += " AND start_ns >= ?"
                params.append(now - 86400 * 10**9)
            if tenant:
                sql += " AND tenant = ?"
                params.append(tenant)
            with sqlite3.connect(path) as conn:
                rows = conn.execute(sql, params).fetchall()
            assert got == aggregate(rows, now), (since, tenant)
            assert any(s.timed_out for s in got) or tenant


def test_label_filters_give_the_same_flows_by_either_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashfrog_sdk.store import queries

    path = tmp_path / "flows.db"
    _varied_store(path)
    asks: list[dict[str, Any]] = [
        {"labels": {"region": "eu"}},
        {"labels": {"region": "eu"}, "limit": 7},
        {"labels": {"region": "us", "rare": "x"}},
        {"labels": {"region": "us"}, "tenant": "t5"},
        {"labels": {"region": "eu"}, "status": "failed", "limit": None},
    ]
    answers = []
    for common in (1, 10**9):  # every label common, then every label rare
        monkeypatch.setattr(queries, "COMMON_LABEL", common)
        with FlowStore(path) as store:
            answers.append([[f.id for f in store.flows(**ask)] for ask in asks])
    assert answers[0] == answers[1]
    assert all(answers[0])
