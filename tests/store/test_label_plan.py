"""`flows(labels=...)` at scale: the label side walks (key, value, started) newest first.

Real SQLite files written by the real `StoreWriter`. The answers are checked against the flows
filtered in Python from an unfiltered read, whichever side the query starts from.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from dashfrog_sdk import conventions as c
from dashfrog_sdk.store import FlowStore, StoreWriter, queries, schema
from dashfrog_sdk.store.convert import Batch, FlowRow


def _store(path: Path, n: int = 3000) -> None:
    rng = random.Random(9)
    now = time.time_ns()
    flows = []
    for i in range(n):
        labels: dict[str, Any] = {"region": rng.choice(("eu", "us", "apac"))}
        if i % 7 == 0:
            labels["batch"] = str(i % 5)
        if i % 300 == 0:
            labels["rare"] = True
        flows.append(
            FlowRow(
                f"{i:032x}",
                name=rng.choice(("a", "b")),
                tenant=f"t{rng.randrange(30)}",
                status=rng.choice((c.COMPLETED, c.FAILED, c.RUNNING)),
                start_ns=now - i * 10**9 - rng.randrange(10**9),  # distinct starts
                labels=labels,
            )
        )
    writer = StoreWriter(str(path))
    assert writer.write(Batch(flows=flows))
    writer.close()


ASKS: list[dict[str, Any]] = [
    {"labels": {"region": "eu"}},
    {"labels": {"region": "eu"}, "limit": 7},
    {"labels": {"region": "eu"}, "limit": None},
    {"labels": {"batch": "3"}},
    {"labels": {"batch": "3", "region": "us"}},
    {"labels": {"rare": True}},
    {"labels": {"rare": True, "region": "eu"}, "limit": None},
    {"labels": {"region": "apac"}, "tenant": "t5"},
    {"labels": {"region": "apac"}, "status": "failed", "limit": 20},
    {"labels": {"region": "eu"}, "name": "a", "since": "30m", "limit": 500},
    {"labels": {"batch": "1"}, "until": "20m"},
    {"labels": {"region": "us"}, "tenant": "t2", "status": ["running", "failed"]},
]


def _expected(everything: list[Any], ask: dict[str, Any], now_ns: int) -> list[str]:
    from dashfrog_sdk.store.convert import label_text
    from dashfrog_sdk.timeutil import to_ns

    statuses = ask.get("status")
    statuses = [statuses] if isinstance(statuses, str) else statuses
    out = []
    for f in everything:
        if any(
            label_text(f.labels.get(k, "\0")) != label_text(v) for k, v in ask["labels"].items()
        ):
            continue
        if ask.get("tenant") and f.tenant != ask["tenant"]:
            continue
        if ask.get("name") and f.name != ask["name"]:
            continue
        if statuses and f.status not in statuses:
            continue
        if ask.get("since") and f.start_ns < to_ns(ask["since"], now_ns=now_ns):
            continue
        if ask.get("until") and f.start_ns > to_ns(ask["until"], now_ns=now_ns):
            continue
        out.append(f.id)
    limit = ask.get("limit", 100)
    return out if limit is None else out[:limit]


@pytest.mark.parametrize("cap", [1, queries.LABEL_PLAN_CAP])
def test_label_filters_answer_what_the_flows_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    """With a cap of 1 every side looks as big as every other: the label side is used."""
    monkeypatch.setattr(queries, "LABEL_PLAN_CAP", cap)
    path = tmp_path / "flows.db"
    _store(path)
    with FlowStore(path) as store:
        everything = store.flows(limit=None)
        for ask in ASKS:
            got = [f.id for f in store.flows(**ask)]
            assert got == _expected(everything, ask, time.time_ns()), ask
            assert got or ask.get("until") or ask.get("since"), ask


def _plan(store: FlowStore, **ask: Any) -> list[str]:
    planned = store._label_plan(
        time.time_ns(),
        ask["labels"],
        ask.get("tenant"),
        ask.get("name"),
        ask.get("status"),
        None,
        None,
        None,
        None,
    )
    if planned is None:
        return ["flows side"]
    sql, params = planned
    return [str(r[3]) for r in store._conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


def test_the_label_side_reads_its_index_in_order_and_the_other_side_when_smaller(
    tmp_path: Path,
) -> None:
    path = tmp_path / "flows.db"
    _store(path)
    with FlowStore(path) as store:
        plan = _plan(store, labels={"region": "eu"})
        assert any("flow_labels_kv_started" in step for step in plan), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort
        assert any("flows USING INDEX sqlite_autoindex_flows_1" in s for s in plan), plan
        # A rare label drives even with a tenant; a tenant smaller than the label drives.
        assert "flows side" not in _plan(store, labels={"rare": True}, tenant="t3")
        assert _plan(store, labels={"region": "eu"}, tenant="t3") == ["flows side"]


def test_a_label_follows_its_flows_start_when_an_earlier_start_arrives(tmp_path: Path) -> None:
    path = tmp_path / "flows.db"
    now = time.time_ns()
    writer = StoreWriter(str(path))
    # b's first record (a step's, say) says it started after a; its start event, later,
    # says it started before a; c's labels arrive before anything knows its start.
    assert writer.write(
        Batch(
            flows=[
                FlowRow("a" * 32, name="x", start_ns=now - 10 * 10**9, labels={"k": "v"}),
                FlowRow("b" * 32, name="x", start_ns=now - 5 * 10**9, labels={"k": "v"}),
                FlowRow("c" * 32, name="x", labels={"k": "v"}),
            ]
        )
    )
    with FlowStore(path) as store:
        assert [f.id[0] for f in store.flows(labels={"k": "v"})] == ["b", "a", "c"]
    assert writer.write(
        Batch(
            flows=[
                FlowRow("b" * 32, start_ns=now - 20 * 10**9),
                FlowRow("c" * 32, start_ns=now - 1 * 10**9),
            ]
        )
    )
    writer.close()
    with FlowStore(path) as store:
        assert [f.id[0] for f in store.flows(labels={"k": "v"})] == ["c", "a", "b"]
        assert [f.id[0] for f in store.flows(labels={"k": "v"}, since="15s")] == ["c", "a"]


def test_a_version_3_store_gets_its_labels_start_on_migration(tmp_path: Path) -> None:
    path = tmp_path / "flows.db"
    conn = schema.connect(str(path), create=True)
    schema.migrate(conn, 3)
    now = time.time_ns()
    for i in range(50):
        conn.execute(
            "INSERT INTO flows (flow_id, name, start_ns, labels, seen_ns) VALUES (?, ?, ?, ?, ?)",
            (f"{i:032x}", "x", now - i * 10**9, '{"k":"v"}', now + i),
        )
        conn.execute("INSERT INTO flow_labels VALUES (?, 'k', 'v')", (f"{i:032x}",))
    conn.close()
    with FlowStore(path) as store:
        got = [f.id for f in store.flows(labels={"k": "v"}, limit=10)]
        assert got == [f"{i:032x}" for i in range(10)]
        assert (
            store._conn.execute(
                "SELECT COUNT(*) FROM flow_labels WHERE started IS NULL"
            ).fetchone()[0]
            == 0
        )
