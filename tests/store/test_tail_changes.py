"""Schema v7: the stats tails' triggers log changes and the writer folds them per transaction.

What must hold (dashfrog_sdk/store/tails.py, "Folded per transaction"): after any sequence of
writes, whichever process made them and in whatever order records arrived, the tails equal
the tails recomputed from ``flows``; the fold in Python equals the fold in SQL; changes left by
a writer that does not fold are counted by readers; a v6 store keeps its tails on migration.
Real SQLite files, the real `StoreWriter` and `FlowStore`.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dashfrog_sdk import conventions as c
from dashfrog_sdk.store import FlowStore, StoreWriter, schema, tails, writer
from dashfrog_sdk.store.convert import Batch, FlowRow
from tests.store.test_tails import _assert_same
from tests.support import ROOT

HOUR = 3_600 * 10**9
STATUSES = (c.RUNNING, c.COMPLETED, c.FAILED, c.CANCELLED)


def _tail_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """The tails' rows that count something (a row of zeros and no row are the same)."""
    rows = conn.execute("SELECT * FROM flow_tails ORDER BY 1, 2, 3, 4, 5").fetchall()
    return [r for r in rows if any(r[5:])]


def _kept_and_recomputed(path: Path) -> tuple[list[Any], list[Any]]:
    """(the tails as the writes left them, the tails recomputed from `flows` at the same
    edges); the recomputation is rolled back."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        kept = _tail_rows(conn)
        edges = conn.execute("SELECT level, edge_ns FROM flow_tail_edges").fetchall()
        conn.execute("BEGIN")
        conn.execute("DELETE FROM flow_tails")
        for level, edge in edges:
            if edge is None:
                tails._add(conn, level, 1, "1", [])
            else:
                tails._add(conn, level, 1, "start_ns >= ?", [edge])
        recomputed = _tail_rows(conn)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return kept, recomputed


def _changes_left(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (n,) = conn.execute("SELECT COUNT(*) FROM flow_tail_changes").fetchone()
    conn.close()
    return int(n)


def _random_rows(rng: random.Random, ids: list[str], now: int, n: int) -> list[FlowRow]:
    """Records of flows in any order: starts (no status), ends of every status, ends before
    their start, a second end, a start earlier than the one stored, unknown names."""
    rows = []
    for _ in range(n):
        flow_id = rng.choice(ids)
        start = now - rng.randrange(0, 30 * HOUR)
        if rng.random() < 0.4:  # a start or a span saying "this flow exists"
            rows.append(
                FlowRow(
                    flow_id,
                    name=rng.choice(("pay", "ship", None)),
                    tenant=rng.choice(("t1", "t2", None)),
                    start_ns=start,
                    timeout_s=rng.choice((None, 1.0)),
                    labels=rng.choice(({}, {"region": "eu"})),
                )
            )
        else:
            status = rng.choice(STATUSES)
            rows.append(
                FlowRow(
                    flow_id,
                    name=rng.choice(("pay", "ship", None)),
                    tenant=rng.choice(("t1", None)),
                    status=status,
                    start_ns=rng.choice((start, None)),
                    end_ns=None if status == c.RUNNING else start + rng.randrange(-5, 10**10),
                    error_type="E" if status == c.FAILED else None,
                )
            )
    return rows


_END_ELSEWHERE = """
import sys
from dashfrog_sdk.store import StoreWriter
from dashfrog_sdk.store.convert import Batch, FlowRow
writer = StoreWriter(sys.argv[1])
ids, status, end = sys.argv[3].split(","), sys.argv[2], int(sys.argv[4])
assert writer.write(Batch(flows=[FlowRow(i, status=status, end_ns=end) for i in ids]))
writer.close()
"""


def test_folded_tails_equal_a_recomputation_after_random_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.db"
    rng = random.Random(11)
    now = time.time_ns()
    ids = [f"{i:032x}" for i in range(300)]
    here, other = StoreWriter(str(path)), StoreWriter(str(path))  # two writers, one file
    for round_ in range(12):
        w = here if round_ % 3 else other
        forget = rng.sample(ids, 3) if round_ % 4 == 3 else None
        assert w.write(
            Batch(flows=_random_rows(rng, ids, now, rng.randrange(1, 400))), forget=forget
        )
        assert _changes_left(path) == 0
        kept, recomputed = _kept_and_recomputed(path)
        assert kept == recomputed, round_
    # Ended by another process, then retention, then the edges moved by the clock.
    subprocess.run(
        [sys.executable, "-c", _END_ELSEWHERE, str(path), c.FAILED, ",".join(ids[:50]), str(now)],
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    here.max_flows = 120
    assert here.apply_retention() > 0
    with sqlite3.connect(path) as conn:
        tails.advance(conn, now + 5 * HOUR)
    conn.close()
    here.close()
    other.close()
    assert _changes_left(path) == 0
    kept, recomputed = _kept_and_recomputed(path)
    assert kept == recomputed
    for since in (None, "1h", "1d"):
        _assert_same(path, monkeypatch, since=since)


def _copy_changes(rng: random.Random, n: int, now: int) -> list[tuple[Any, ...]]:
    out = []
    for _ in range(n):
        start = rng.choice((None, now - rng.randrange(0, 30 * HOUR)))
        end = rng.choice(
            (
                None,
                (start or now)
                + rng.choice((-3, 0, 63, 64, 10**6, rng.randrange(1 << 40), 1 << 63)),
            )
        )
        if end is not None and end >= 1 << 63:
            end = (1 << 63) - 1
        out.append(
            (
                rng.choice((1, -1)),
                rng.choice(("a", "b", None)),
                rng.choice(("t", None)),
                rng.choice(STATUSES),
                start,
                end,
            )
        )
    return out


@pytest.mark.parametrize("odd", [False, True])
def test_the_python_fold_equals_the_sql_fold(tmp_path: Path, odd: bool) -> None:
    """`fold` groups the changes in Python; `_fold_sql` (which `read` mirrors) in SQL. `odd`:
    a hand-written change whose values are not integers or text (Python hands it to SQL)."""
    rng = random.Random(12)
    now = time.time_ns()
    base = tmp_path / "base.db"
    StoreWriter(str(base)).write(Batch(flows=[FlowRow("seed", name="a", start_ns=now)]))
    changes = _copy_changes(rng, 3000, now)
    if odd:
        changes.append((1, 7, 2.5, c.COMPLETED, float(now), now + 10**6))
    results = []
    for name, fold in (("python", tails.fold), ("sql", tails._fold_sql)):
        path = tmp_path / f"{name}.db"
        shutil.copyfile(base, path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO flow_tail_changes VALUES (?, ?, ?, ?, ?, ?)", changes)
        fold(conn)
        conn.execute("COMMIT")
        assert conn.execute("SELECT COUNT(*) FROM flow_tail_changes").fetchone() == (0,)
        results.append(_tail_rows(conn))
        conn.close()
    assert results[0] == results[1]
    assert len(results[0]) > 20


def test_changes_a_writer_did_not_fold_are_counted_by_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer with its own SQL (a shell, a script) never calls `fold`: the triggers still
    log its changes, readers count them, and the next store write folds them."""
    path = tmp_path / "flows.db"
    now = time.time_ns()
    rows = [
        FlowRow(
            f"{i:032x}",
            name="job",
            tenant="acme",
            status=c.COMPLETED,
            start_ns=now - i * HOUR,
            end_ns=now - i * HOUR + 10**8 * (i + 1),
        )
        for i in range(40)
    ]
    w = StoreWriter(str(path))
    assert w.write(Batch(flows=rows))
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO flows (flow_id, name, tenant, status, start_ns, end_ns, seen_ns) "
            "VALUES ('raw', 'job', 'acme', 'failed', ?, ?, ?)",
            (now - HOUR, now, now),
        )
        conn.execute("UPDATE flows SET status = 'failed' WHERE flow_id < ?", (f"{5:032x}",))
        conn.execute("DELETE FROM flows WHERE flow_id > ?", (f"{35:032x}",))
    conn.close()
    assert _changes_left(path) > 0
    for since in (None, "1h", "1d", "3d"):
        _assert_same(path, monkeypatch, since=since)
        _assert_same(path, monkeypatch, since=since, tenant="acme", name="job")
    assert w.write(Batch(flows=[FlowRow("next", name="job", tenant="acme", start_ns=now)]))
    w.close()
    assert _changes_left(path) == 0
    kept, recomputed = _kept_and_recomputed(path)
    assert kept == recomputed
    for since in (None, "1d"):
        _assert_same(path, monkeypatch, since=since)


def test_a_version_6_store_is_migrated_with_its_tails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flows.db"
    conn = schema.connect(str(path), create=True)
    assert schema.migrate(conn, 6) == 6
    now = time.time_ns()
    rng = random.Random(13)
    conn.execute("BEGIN")
    for i in range(500):  # v6's triggers keep the tails, row by row
        start = now - rng.randrange(0, 30 * HOUR)
        status = rng.choice(STATUSES)
        conn.execute(
            "INSERT INTO flows (flow_id, name, tenant, status, start_ns, end_ns, seen_ns) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                f"{i:032x}",
                rng.choice("ab"),
                "t",
                status,
                start,
                None if status == c.RUNNING else start + rng.randrange(10**9),
                now + i,
            ),
        )
    conn.execute("UPDATE flows SET status = 'failed' WHERE status = 'running'")
    conn.execute("COMMIT")
    before = _tail_rows(conn)
    conn.close()
    with FlowStore(path) as store:  # opening migrates
        assert store.count() == 500
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT MAX(version) FROM schema_version").fetchone() == (
            schema.SCHEMA_VERSION,
        )
        assert _tail_rows(check) == before  # carried over as they were
        triggers = dict(
            check.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        )
    check.close()
    for name in ("flow_tails_insert", "flow_tails_update", "flow_tails_delete"):
        assert "flow_tail_changes" in triggers[name]
    for since in (None, "1d"):
        _assert_same(path, monkeypatch, since=since)
    w = StoreWriter(str(path))
    assert w.write(Batch(flows=_random_rows(rng, [f"{i:032x}" for i in range(600)], now, 300)))
    w.close()
    kept, recomputed = _kept_and_recomputed(path)
    assert kept == recomputed
    for since in (None, "1h", "1d"):
        _assert_same(path, monkeypatch, since=since)


def test_fast_json_equals_json_dumps() -> None:
    """writer._json (a prebuilt C encoder, "{}" for empty) gives what writer._dumps gives."""
    assert writer._encode is not None  # CPython: the shortcut is what runs
    rng = random.Random(14)
    values: list[dict[str, Any]] = [{}, {"a": "b"}, {"é": 'ü\n"\\'}, {"x": [1, 2.5, None]}]
    values.append({"n": float("nan"), "i": float("-inf"), "t": True, "f": False, "z": 0})
    values.append({"nested": {"k": [{"deep": "v"}]}, "big": 10**30, "neg": -1.5e-300})
    for _ in range(300):
        values.append(
            {
                "".join(
                    rng.choice('ab\u00e9\u4e2d"\\ \t') for _ in range(rng.randrange(4))
                ): rng.choice(
                    (rng.random(), rng.randrange(-(10**20), 10**20), "s" * rng.randrange(3), None)
                )
                for _ in range(rng.randrange(5))
            }
        )
    for value in values:
        assert writer._json(value) == writer._dumps(value)
        json.loads(writer._json(value))


def test_fill_gives_every_identity_field() -> None:
    """writer._fill names each identity field (no loop over _FLOW_IDENTITY): none is missed."""
    for name in writer._FLOW_IDENTITY:
        into, row = FlowRow("f"), FlowRow("f")
        setattr(row, name, "x" if name != "end_on_exit" else True)
        writer._fill(into, row)
        assert getattr(into, name) == getattr(row, name), name
        kept = FlowRow("f")
        setattr(kept, name, "first" if name != "end_on_exit" else False)
        writer._fill(kept, row)
        assert getattr(kept, name) == ("first" if name != "end_on_exit" else False), name


def test_multi_row_statements_equal_one_row_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writer._upsert_rows writes up to ROWS_PER_STATEMENT rows per INSERT; with 1 it is one
    statement per row (what executemany did). Random batches that repeat flows (a flow's
    two ends in one statement meet as an upsert), labels and steps: the same store."""
    from dashfrog_sdk.store.convert import StepRow

    now = time.time_ns()
    ids = [f"{i:032x}" for i in range(150)]
    dumps = []
    for rows_per_statement in (1, writer.ROWS_PER_STATEMENT, 7):
        monkeypatch.setattr(writer, "ROWS_PER_STATEMENT", rows_per_statement)
        rng = random.Random(15)
        path = tmp_path / f"rows-{rows_per_statement}.db"
        w = StoreWriter(str(path))
        for _ in range(6):
            flows = _random_rows(rng, ids, now, rng.randrange(1, 300))
            steps = [
                StepRow(
                    f"{rng.randrange(400):016x}",
                    rng.choice(ids),
                    rng.choice("abc"),
                    status=rng.choice(STATUSES),
                    start_ns=now - rng.randrange(10**9),
                    end_ns=rng.choice((None, now)),
                    attributes=rng.choice(({}, {"n": rng.randrange(9)})),
                )
                for _ in range(rng.randrange(0, 200))
            ]
            assert w.write(Batch(flows=flows, steps=steps))
        w.close()
        with sqlite3.connect(path) as conn:
            dumps.append(
                [
                    conn.execute(
                        "SELECT flow_id, name, tenant, status, start_ns, end_ns, deadline_ns, "
                        "error_type, labels FROM flows ORDER BY flow_id"
                    ).fetchall(),
                    conn.execute("SELECT * FROM flow_labels ORDER BY 1, 2").fetchall(),
                    conn.execute("SELECT * FROM steps ORDER BY span_id").fetchall(),
                    _tail_rows(conn),
                ]
            )
        conn.close()
    assert dumps[0] == dumps[1] == dumps[2]
    assert len(dumps[0][0]) > 100 and len(dumps[0][2]) > 100


def test_old_advance_with_pending_changes_is_refused(tmp_path: Path) -> None:
    """A pre-v7 process (connection opened before the migration) writes a flow without
    folding, then its `advance` (UPDATE of the edges, no fold) moves the 1 h edge past the
    flow's start: it took the flow out of a tail it was never folded into, and the fold that
    follows, against the moved edge, never added it: the tail stayed at -1 for good. The
    schema refuses that UPDATE while changes are pending; the new `advance` folds first."""

    path = str(tmp_path / "s.db")
    conn = schema.connect(path, create=True)
    schema.migrate(conn)
    t0 = time.time_ns()
    tails.rebuild(conn, now_ns=t0)
    conn.execute(
        "INSERT INTO flows (flow_id, name, status, start_ns, end_ns, labels, seen_ns) "
        "VALUES ('f', 'n', 'completed', ?, ?, '{}', ?)",
        (t0 + 10**9, t0 + 2 * 10**9, t0),
    )
    later = t0 + 3602 * 10**9
    with pytest.raises(sqlite3.IntegrityError, match="fold flow_tail_changes"):
        # What pre-v7 tails.advance does: move the edge, without folding first.
        conn.execute(
            "UPDATE flow_tail_edges SET edge_ns = ? WHERE level = 0", (later - 3600 * 10**9,)
        )
    tails.advance(conn, now_ns=later)  # folds, then moves the edges
    rows = conn.execute("SELECT level, SUM(n) FROM flow_tails GROUP BY 1 ORDER BY 1").fetchall()
    conn.close()
    assert rows == [(0, 0), (1, 1), (2, 1)]  # taken out of the 1 h tail once (not left at -1)
