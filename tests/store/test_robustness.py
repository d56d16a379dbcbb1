"""Schema versions and migrations, retention, and a store that cannot be written."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

import dashfrog_sdk
from dashfrog_sdk.store import SCHEMA_VERSION, FlowStore, StoreError, StoreWriter, schema
from dashfrog_sdk.store.convert import Batch, FlowRow, StepRow
from dashfrog_sdk.store.exporter import build_exporters
from tests.store.conftest import Pipe


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


# -- schema -------------------------------------------------------------------------------------


def test_new_store_has_the_current_schema_and_wal(pipe: Pipe, store_path: Path) -> None:
    with pipe.flow("x", "t"):
        pass
    pipe.flush()
    assert store_path.exists()  # parent directories created
    assert _versions(store_path) == list(range(1, SCHEMA_VERSION + 1))
    assert {"flows", "flow_labels", "steps", "spans", "events", "logs"} <= _tables(store_path)
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        plan = " ".join(
            str(r)
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM flows WHERE tenant = ? AND status = ? "
                "ORDER BY start_ns DESC LIMIT 10",
                ("a", "failed"),
            )
        )
    assert "flows_tenant_status" in plan


def test_upgrade_from_v1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = schema.connect(str(path), create=True)
    schema.migrate(conn, target=1)
    conn.execute(
        "INSERT INTO flows (flow_id, name, tenant, status, start_ns, end_ns, labels, seen_ns) "
        "VALUES ('a' || printf('%031d', 1), 'legacy', 'acme', 'completed', 1000000, 3000000, "
        '\'{"region":"eu"}\', ?)',
        (time.time_ns(),),
    )
    conn.execute(
        "INSERT INTO steps (span_id, flow_id, name, status, start_ns, end_ns) "
        "VALUES ('s1', 'a' || printf('%031d', 1), 'validate', 'completed', 1500000, 2000000)"
    )
    conn.close()
    assert _versions(path) == [1]
    assert "logs" not in _tables(path)

    with FlowStore(path) as store:  # reading migrates
        detail = store.flow("a0000")
    assert _versions(path) == list(range(1, SCHEMA_VERSION + 1))
    assert "logs" in _tables(path)
    assert (detail.name, detail.status, detail.labels, detail.duration_ms) == (
        "legacy",
        "completed",
        {"region": "eu"},
        2.0,
    )
    assert [s.name for s in detail.steps] == ["validate"]
    assert detail.logs == []


def test_writer_upgrades_from_v1_too(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = schema.connect(str(path), create=True)
    schema.migrate(conn, target=1)
    conn.close()
    p = Pipe(path)
    with p.flow("x", "t") as fh:
        p.log(fh, "hello")
    p.flush()
    p.close()
    assert _versions(path)[-1] == SCHEMA_VERSION
    with FlowStore(path) as store:
        assert [entry.body for entry in store.flow(fh.id).logs] == ["hello"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = schema.connect(str(path), create=True)
    schema.migrate(conn)
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        FlowStore(path)
    writer = StoreWriter(str(path))
    assert writer.write(Batch(flows=[FlowRow("f" * 32, name="x")])) is False


def test_other_sqlite_database_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(StoreError, match="not a flow store"):
        FlowStore(path)
    assert _tables(path) == {"users"}


# -- failures never raise -----------------------------------------------------------------------


def test_corrupt_store_fails_exports_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError):
        FlowStore(path)
    p = Pipe(path)
    span_exporter, log_exporter = build_exporters(str(path))
    with caplog.at_level(logging.WARNING, logger="dashfrog_sdk.store"):
        for _ in range(3):
            with p.flow("x", "t"):
                pass
            assert not p.tp.force_flush(10_000)  # the flush says the write failed
        spans = list(_finished_spans(p))
        assert span_exporter.export(spans) is SpanExportResult.FAILURE
        assert log_exporter.export([]) is LogRecordExportResult.SUCCESS  # nothing to write
    p.close()
    warnings = [r for r in caplog.records if r.name == "dashfrog_sdk.store"]
    assert len(warnings) == 2  # one per writer, not one per batch
    assert "write failed" in warnings[0].getMessage()
    assert p.writer.failures >= 3
    # ...and every failure is in stats(), as for any other runtime trouble.
    assert dashfrog_sdk.stats()["diagnostics"]["store.write_errors"] >= p.writer.failures


def _finished_spans(p: Pipe) -> list[ReadableSpan]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    p.tp.add_span_processor(SimpleSpanProcessor(memory))
    with p.flow("y", "t"):
        pass
    return list(memory.get_finished_spans())


def test_unwritable_path_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = blocker / "sub" / "flows.db"  # a directory cannot be created under a file
    p = Pipe(path)
    with p.flow("x", "t"):
        pass
    assert not p.tp.force_flush(10_000)  # the flush says the write failed
    p.close()
    assert p.writer.failures >= 1
    assert not path.exists()


def test_locked_store_fails_then_recovers(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 100)
    writer = StoreWriter(str(store_path))
    assert writer.write(Batch(flows=[FlowRow("a" * 32, name="first")]))
    writer.close()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert writer.write(Batch(flows=[FlowRow("b" * 32, name="blocked")])) is False
        assert writer.failures == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert writer.write(Batch(flows=[FlowRow("c" * 32, name="after")]))
    writer.close()
    with FlowStore(store_path) as store:
        assert sorted(f.name or "" for f in store.flows()) == ["after", "first"]


# -- retention ----------------------------------------------------------------------------------


def _batch(i: int) -> Batch:
    flow_id = f"{i:032x}"
    return Batch(
        flows=[
            FlowRow(
                flow_id,
                name="n",
                tenant="t",
                status="completed",
                start_ns=i,
                end_ns=i + 1,
                labels={"k": i},
            )
        ],
        steps=[StepRow(f"{i:016x}", flow_id, "s", status="completed", start_ns=i, end_ns=i + 1)],
    )


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_retention_by_count_is_automatic(store_path: Path) -> None:
    writer = StoreWriter(str(store_path), max_flows=10, retention_every_flows=5)
    for i in range(1, 31):
        assert writer.write(_batch(i))
    writer.close()
    remaining = _count(store_path, "flows")
    assert 10 <= remaining < 15  # trimmed every 5 flows
    with FlowStore(store_path) as store:
        ids = {f.id for f in store.flows(limit=None)}
    assert f"{30:032x}" in ids and f"{1:032x}" not in ids
    assert _count(store_path, "steps") == remaining
    assert _count(store_path, "flow_labels") == remaining


def test_retention_by_age(store_path: Path) -> None:
    writer = StoreWriter(str(store_path), max_age_s=3600, retention_every_s=3600)
    for i in range(1, 6):
        writer.write(_batch(i))
    with sqlite3.connect(store_path) as conn:  # two flows last written two hours ago
        conn.execute(
            "UPDATE flows SET seen_ns = seen_ns - ? WHERE flow_id IN (?, ?)",
            (2 * 3600 * 10**9, f"{1:032x}", f"{2:032x}"),
        )
    assert writer.apply_retention() == 2
    writer.close()
    assert _count(store_path, "flows") == 3
    assert _count(store_path, "steps") == 3


def test_no_bounds_means_no_retention(store_path: Path) -> None:
    writer = StoreWriter(str(store_path), retention_every_flows=1)
    for i in range(1, 6):
        writer.write(_batch(i))
    writer.close()
    assert _count(store_path, "flows") == 5


def _open_new_store(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        conn = schema.connect(path, create=True)
        schema.migrate(conn)
        conn.close()
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


@pytest.mark.timeout(360)  # 300 tries of two new processes: 20-60 s, more on a loaded runner
def test_processes_creating_one_store_at_once_all_open_it(tmp_path: Path) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite runs no busy handler for
    # that: without waiting for it, one of two processes opening a new store at the same
    # moment got "database is locked" (about one try in three here) and its first batch was
    # lost. Real processes, started together at a barrier. Forked from a fork server, not from
    # this process: by now the test process may run chDB's engine threads (the ClickHouse store
    # tests), and a child forked while one of them held a lock hung (one CI run).
    # Children fork from a server that has imported this module already (when this test
    # starts the server), so a try takes about 0.1 s instead of 2-3 s (40 slow tries reached
    # the 120 s test timeout on a loaded runner). Without the fix one fast try in about 50
    # lost the race here (it failed at try 50 once the wait was taken out), so 300 tries miss
    # it with a probability of about 0.2 %.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    began = time.monotonic()
    for attempt in range(300):
        if attempt >= 20 and time.monotonic() - began > 120:
            break  # a fork server started earlier without the preload: slow tries, fewer
        path = str(tmp_path / f"new-{attempt}.db")
        barrier, results = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open_new_store, args=(path, barrier, results)) for _ in "ab"]
        for proc in procs:
            proc.start()
        try:
            barrier.wait(timeout=30)
            outcomes = [results.get(timeout=30) for _ in procs]
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():  # pragma: no cover - only if a child hangs
                    proc.kill()
        assert outcomes == ["ok", "ok"], f"attempt {attempt}: {outcomes}"
        assert _versions(Path(path)) == list(range(1, SCHEMA_VERSION + 1))
