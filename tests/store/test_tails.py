"""The stats pre-aggregates (dashfrog_sdk/store/tails.py) answer what the exact stats answer.

Every store here is a real SQLite file written by the real `StoreWriter`; "exact" is the same
`stats()` call with the tails switched off (`EXACT_STATS_UP_TO` above the store's size), which
reads every flow. Counts must be equal; percentiles within the bins' documented bound.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dashfrog_sdk import conventions as c
from dashfrog_sdk.store import FlowStore, StoreWriter, queries, schema, tails
from dashfrog_sdk.store.aggregate import percentile
from dashfrog_sdk.store.convert import Batch, FlowRow
from tests.support import ROOT

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
COUNTS = ("name", "tenant", "count", "running", "completed", "failed", "cancelled", "timed_out")


def _flows(rng: random.Random, n: int, now: int, first: int = 0) -> list[FlowRow]:
    out = []
    for i in range(first, first + n):
        start = now - rng.randrange(0, 9 * DAY)
        roll = rng.random()
        status = (
            c.COMPLETED
            if roll < 0.6
            else c.FAILED
            if roll < 0.8
            else c.CANCELLED
            if roll < 0.9
            else c.RUNNING
        )
        out.append(
            FlowRow(
                f"{i:032x}",
                name=rng.choice(("a", "b", None)),
                tenant=rng.choice((f"t{rng.randrange(6)}", None)),
                status=status,
                start_ns=start,
                end_ns=None if status == c.RUNNING else start + int(rng.expovariate(1e-8)),
                timeout_s=rng.choice((None, 1.0, 10**6)),
                service="api",
            )
        )
    return out


def _write(path: Path, flows: list[FlowRow], **kw: Any) -> StoreWriter:
    writer = StoreWriter(str(path), **kw)
    assert writer.write(Batch(flows=flows))
    return writer


def _both(path: Path, monkeypatch: pytest.MonkeyPatch, **ask: Any) -> tuple[list[Any], list[Any]]:
    """(stats from the tails, exact stats) for the same question."""
    answers = []
    for limit in (0, 10**9):
        monkeypatch.setattr(queries, "EXACT_STATS_UP_TO", limit)
        with FlowStore(path) as store:
            answers.append(list(store.stats(**ask)))
    return answers[0], answers[1]


def _assert_same(path: Path, monkeypatch: pytest.MonkeyPatch, **ask: Any) -> None:
    got, exact = _both(path, monkeypatch, **ask)
    assert [tuple(getattr(s, f) for f in COUNTS) for s in got] == [
        tuple(getattr(s, f) for f in COUNTS) for s in exact
    ], ask
    assert [s.failure_rate for s in got] == pytest.approx([s.failure_rate for s in exact])
    for g, e in zip(got, exact, strict=True):
        for q in ("p50_ms", "p95_ms"):
            want, have = getattr(e, q), getattr(g, q)
            if want is None:
                assert have is None
            else:
                assert have == pytest.approx(want, rel=tails.RELATIVE_ERROR, abs=1e-6), (ask, g)


def test_bins_in_sql_equal_the_python_bins_and_their_bound() -> None:
    rng = random.Random(3)
    values = [0, 1, 63, 64, 65, 127, 128, 10**6, 10**9, 3 * 10**12, (1 << 62) + 5, -7]
    values += [int(rng.expovariate(1e-9)) for _ in range(2000)]
    conn = sqlite3.connect(":memory:")
    for d in values:
        (in_sql,) = conn.execute(f"SELECT {tails.bin_sql(':d')}", {"d": d}).fetchone()
        assert in_sql == tails.bin_of(d), d
        if 0 <= d < 1 << 62:
            assert abs(tails.bin_value(tails.bin_of(d)) - d) <= d * tails.RELATIVE_ERROR
    ordered = [tails.bin_of(d) for d in sorted(values)]
    assert ordered == sorted(ordered)  # bins keep the order of durations


def test_percentiles_from_bins_are_within_the_bound() -> None:
    rng = random.Random(5)
    for n in (1, 2, 3, 10, 101, 5000):
        durations = sorted(int(rng.lognormvariate(17, 2)) for _ in range(n))
        counted: dict[int, int] = {}
        for d in durations:
            counted[tails.bin_of(d)] = counted.get(tails.bin_of(d), 0) + 1
        for q in (0.0, 0.5, 0.95, 1.0):
            exact = percentile([d / 1e6 for d in durations], q)
            assert exact is not None
            approx = tails.quantile(sorted(counted.items()), q)
            assert approx == pytest.approx(exact, rel=tails.RELATIVE_ERROR), (n, q)


@pytest.mark.parametrize("since", [None, "1h", "1d", "2d", "3d", "7d", "30d"])
def test_tails_equal_the_exact_stats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, since: str | None
) -> None:
    path = tmp_path / "flows.db"
    _write(path, _flows(random.Random(1), 3000, time.time_ns())).close()
    _assert_same(path, monkeypatch, since=since)
    _assert_same(path, monkeypatch, since=since, tenant="t2")
    _assert_same(path, monkeypatch, since=since, name="a", tenant="t1")


def test_large_stores_use_the_tails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "flows.db"
    _write(path, _flows(random.Random(2), 400, time.time_ns())).close()
    used = []
    real = tails.read
    monkeypatch.setattr(tails, "read", lambda *a: used.append(a) or real(*a))
    monkeypatch.setattr(queries, "EXACT_STATS_UP_TO", 100)
    with FlowStore(path) as store:
        store.stats(since="7d")  # above 100 flows: the tails
        store.stats(since="1h")  # a handful: exact
    assert len(used) == 1


_END_ELSEWHERE = """
import sys
from dashfrog_sdk.store import StoreWriter
from dashfrog_sdk.store.convert import Batch, FlowRow
writer = StoreWriter(sys.argv[1])
ids, status, end = sys.argv[3].split(","), sys.argv[2], int(sys.argv[4])
assert writer.write(Batch(flows=[FlowRow(i, status=status, end_ns=end) for i in ids]))
writer.close()
"""


def _end_elsewhere(path: Path, ids: list[str], status: str, end_ns: int) -> None:
    """Flows ended by another process (its own writer, like a Celery worker's)."""
    subprocess.run(
        [sys.executable, "-c", _END_ELSEWHERE, str(path), status, ",".join(ids), str(end_ns)],
        check=True,
        cwd=ROOT,
        timeout=120,
    )


def test_a_flow_ended_later_in_another_process_moves_in_the_tails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.db"
    now = time.time_ns()
    running = [
        FlowRow(f"{i:032x}", name="job", tenant="acme", status=c.RUNNING, start_ns=now - i * HOUR)
        for i in range(60)
    ]
    _write(path, running).close()
    _assert_same(path, monkeypatch, since="1d")
    _end_elsewhere(path, [f"{i:032x}" for i in range(0, 60, 2)], c.COMPLETED, now)
    _end_elsewhere(path, [f"{i:032x}" for i in range(1, 60, 4)], c.FAILED, now)
    for since in (None, "1d", "3d"):
        _assert_same(path, monkeypatch, since=since)
    got, _ = _both(path, monkeypatch)
    assert [(s.running, s.completed, s.failed) for s in got] == [(15, 30, 15)]
    assert got[0].p50_ms is not None


def test_status_precedence_is_what_the_tails_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """failed > cancelled > completed (dashfrog_sdk.status), whatever order the ends arrive."""
    path = tmp_path / "flows.db"
    now = time.time_ns()
    ids = [f"{i:032x}" for i in range(3)]
    _write(
        path, [FlowRow(i, name="p", tenant="t", status=c.RUNNING, start_ns=now - HOUR) for i in ids]
    ).close()
    # flow 0: completed, then failed; flow 1: failed, then completed; flow 2: cancelled, then
    # completed, then failed — each end from another process.
    _end_elsewhere(path, [ids[0], ids[2]], c.COMPLETED, now - 10**9)
    _end_elsewhere(path, [ids[1]], c.FAILED, now - 2 * 10**9)
    _end_elsewhere(path, [ids[0]], c.FAILED, now)
    _end_elsewhere(path, [ids[1]], c.COMPLETED, now)
    _end_elsewhere(path, [ids[2]], c.CANCELLED, now)
    got, _ = _both(path, monkeypatch, since="1d")
    assert [(s.completed, s.failed, s.cancelled, s.running) for s in got] == [(0, 2, 1, 0)]
    _assert_same(path, monkeypatch, since="1d")
    _assert_same(path, monkeypatch)


def test_retention_takes_deleted_flows_out_of_the_tails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.db"
    writer = _write(path, _flows(random.Random(4), 1500, time.time_ns()))
    writer.max_flows = 400
    assert writer.apply_retention() == 1100
    writer.close()
    with FlowStore(path) as store:
        assert store.count() == 400
    got, _ = _both(path, monkeypatch)
    assert sum(s.count for s in got) == 400
    for since in (None, "1d", "7d"):
        _assert_same(path, monkeypatch, since=since)


def test_edges_follow_the_clock_and_stale_edges_are_corrected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.db"
    now = time.time_ns()
    _write(path, _flows(random.Random(6), 2000, now)).close()
    # As if the writer last moved the edges 5 hours ago: readers correct by what is between.
    with sqlite3.connect(path) as conn:
        tails.rebuild(conn, now - 5 * HOUR)
    for since in ("1h", "1d", "7d", "2d"):
        _assert_same(path, monkeypatch, since=since)
    # The next write moves them: each edge is now minus its width again.
    _write(path, _flows(random.Random(7), 10, now, first=5000)).close()
    with sqlite3.connect(path) as conn:
        edges = dict(conn.execute("SELECT level, edge_ns FROM flow_tail_edges").fetchall())
    for level, width in tails.LEVELS:
        if width is None:
            assert edges[level] is None
        else:
            assert abs(edges[level] - (time.time_ns() - width)) < 60 * 10**9
    for since in ("1h", "1d", "7d"):
        _assert_same(path, monkeypatch, since=since)


def test_timed_out_flows_count_as_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.db"
    now = time.time_ns()
    flows = [
        FlowRow(
            f"{i:032x}",
            name="slow",
            tenant="t",
            status=c.RUNNING,
            start_ns=now - HOUR,
            timeout_s=1.0 if i % 2 else None,
        )
        for i in range(10)
    ]
    _write(path, flows).close()
    got, _ = _both(path, monkeypatch, since="1d")
    assert [(s.running, s.timed_out, s.failure_rate) for s in got] == [(5, 5, 1.0)]
    _assert_same(path, monkeypatch, since="1d")


def test_a_version_3_store_is_migrated_with_its_tails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.db"
    conn = schema.connect(str(path), create=True)
    schema.migrate(conn, 3)
    now = time.time_ns()
    conn.executemany(
        "INSERT INTO flows (flow_id, name, tenant, status, start_ns, end_ns, seen_ns) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (f.flow_id, f.name, f.tenant, f.status, f.start_ns, f.end_ns, now + i)
            for i, f in enumerate(_flows(random.Random(8), 1000, now))
        ],
    )
    conn.close()
    with FlowStore(path) as store:
        assert store.count() == 1000
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT MAX(version) FROM schema_version").fetchone() == (
            schema.SCHEMA_VERSION,
        )
    for since in (None, "1d", "7d"):
        _assert_same(path, monkeypatch, since=since)
