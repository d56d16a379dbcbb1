"""The flow store's queries on SQLite and on ClickHouse (chDB) side by side, at several sizes.

    .venv/bin/python benchmarks/store.py --chdb [--sizes 100000,1000000] [--data-dir DIR]
    .venv/bin/python benchmarks/store_backends.py [--sizes 100000,1000000] [--data-dir DIR]

For each size N: N flows (1,000 tenants; 85 % completed, 10 % failed, 5 % running; started over
the last 3 days; two labels each). SQLite gets them through its writer (store.py's generator);
ClickHouse gets the rows the collector's clickhouse exporter would write for the same shape of
flow, four spans (the flow and three steps) and four events (flow.start and three step.start) a
flow, generated inside ClickHouse (INSERT ... SELECT FROM numbers(N)) so the materialized views
of the rollup do the work they do in production. Then the same queries on both, cold and the
median of 5, and for ClickHouse the ratio between the largest and the smallest size: a query
with a tenant filter should not grow with the table.

Each cell is the median wall time and, in brackets, the CPU time the process spent on it
(chDB and SQLite run in this process; on a shared machine the CPU time is the steadier
figure). chDB's fixed cost per query (`SELECT 1` through the store's transport) is printed
first; a query's own cost is its time minus that. With ``--data-dir`` the generated stores are
kept there and reused by the next run (a directory per rollup version), so a run measures a
store whose background merges have run, as a live one's have.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import store as sqlite_bench  # benchmarks/store.py

from dashfrog_sdk.clickhouse import migrate
from dashfrog_sdk.clickhouse.connection import ChdbTransport, Target, render
from dashfrog_sdk.store import FlowStore

TENANTS = 1000
TENANT = "tenant-42"

# One statement per table: N flows' worth of exporter rows. {n} flows, {now} ns, {db}.
_TRACES = """
INSERT INTO {db}.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind,
    ServiceName, ScopeName, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT
    fromUnixTimestamp64Nano(start + if(k = 0, 0, (k - 1) * 50000000)) AS Timestamp,
    trace_id, span_id, if(k = 0, '', flow_span) AS ParentSpanId,
    if(k = 0, concat('flow ', name), concat('step ', step)) AS SpanName,
    'SPAN_KIND_INTERNAL', if(k = 3, 'worker', 'api'), 'dashfrog_sdk',
    mapUpdate(attrs, if(k = 0,
        map('dashfrog.flow.status', status, 'dashfrog.flow.end_on_exit', 'true'),
        map('dashfrog.step.name', step, 'dashfrog.step.status', step_status))) AS SpanAttributes,
    toUInt64(if(k = 0, 150000000, 50000000)) AS Duration,
    if(status = 'failed' AND k IN (0, 3), 'STATUS_CODE_ERROR', 'STATUS_CODE_UNSET'),
    if(status = 'failed' AND k IN (0, 3), 'card declined', '')
FROM (
    SELECT number AS i, arrayJoin([0, 1, 2, 3]) AS k,
        lower(hex(MD5(toString(i)))) AS flow_id,
        lower(hex(MD5(concat('t', toString(i))))) AS trace_id,
        substring(lower(hex(MD5(concat('s', toString(i), '-', toString(k))))), 1, 16) AS span_id,
        substring(lower(hex(MD5(concat('s', toString(i), '-0')))), 1, 16) AS flow_span,
        concat('tenant-', toString(i % {tenants})) AS tenant,
        ['order_processing', 'data_import', 'webhook'][i % 3 + 1] AS name,
        ['validate', 'charge', 'ship'][greatest(k, 1)] AS step,
        {now} - toInt64(cityHash64(i) % (3 * 86400000000000)) AS start,
        cityHash64(i, 1) % 100 AS roll,
        multiIf(roll < 85, 'completed', roll < 95, 'failed', 'running') AS status,
        if(status = 'failed' AND k = 3, 'failed', 'completed') AS step_status,
        map('dashfrog.flow.id', flow_id, 'dashfrog.flow.name', name, 'dashfrog.tenant', tenant,
            'dashfrog.label.region', ['eu', 'us', 'apac'][i % 3 + 1],
            'dashfrog.label.plan', ['free', 'pro'][intDiv(i, 3) % 2 + 1]) AS attrs
    FROM numbers({n})
)
WHERE NOT (status = 'running' AND k IN (0, 3))  -- a running flow's span and last step are open
"""

_LOGS = """
INSERT INTO {db}.otel_logs (Timestamp, TraceId, SpanId, ServiceName, ScopeName, LogAttributes,
    EventName)
SELECT
    fromUnixTimestamp64Nano(start + if(k = 0, 1000, (k - 1) * 50000000 + 1000)),
    trace_id, span_id, if(k = 3, 'worker', 'api'), 'dashfrog_sdk',
    if(k = 0, attrs, mapUpdate(attrs, map('dashfrog.step.name', step))),
    if(k = 0, 'dashfrog.flow.start', 'dashfrog.step.start')
FROM (
    SELECT number AS i, arrayJoin([0, 1, 2, 3]) AS k,
        lower(hex(MD5(toString(i)))) AS flow_id,
        lower(hex(MD5(concat('t', toString(i))))) AS trace_id,
        substring(lower(hex(MD5(concat('s', toString(i), '-', toString(k))))), 1, 16) AS span_id,
        concat('tenant-', toString(i % {tenants})) AS tenant,
        ['order_processing', 'data_import', 'webhook'][i % 3 + 1] AS name,
        ['validate', 'charge', 'ship'][greatest(k, 1)] AS step,
        {now} - toInt64(cityHash64(i) % (3 * 86400000000000)) AS start,
        map('dashfrog.flow.id', flow_id, 'dashfrog.flow.name', name, 'dashfrog.tenant', tenant,
            'dashfrog.label.region', ['eu', 'us', 'apac'][i % 3 + 1],
            'dashfrog.label.plan', ['free', 'pro'][intDiv(i, 3) % 2 + 1]) AS attrs
    FROM numbers({n})
)
"""


def write_chdb(path: str, database: str, flows: int) -> float:
    transport = ChdbTransport(Target("chdb", database, path=path))
    try:
        migrate.apply(transport, database)
        now = time.time_ns()
        began = time.perf_counter()
        # In slices, as a collector's batches arrive (and to bound the views' memory).
        step = 100_000
        for first in range(0, flows, step):
            count = min(step, flows - first)
            for template in (_TRACES, _LOGS):
                sql = template.replace("FROM numbers({n})", f"FROM numbers({first}, {count})")
                sql = sql.replace("{tenants}", str(TENANTS)).replace("{now}", str(now))
                transport.command(render(sql.replace("{n}", str(count)), database=database))
        return time.perf_counter() - began
    finally:
        transport.close()


def queries(store: Any, some_id: str) -> list[tuple[str, Callable[[], Any]]]:
    return [
        (
            "flows(tenant, status=failed, since=1d)",
            lambda: store.flows(tenant=TENANT, status="failed", since=timedelta(days=1)),
        ),
        ("flows(tenant, status=running)", lambda: store.flows(tenant=TENANT, status="running")),
        ("flows(status=running)", lambda: store.flows(status="running")),
        (
            "flows(status=running, since=1d)",
            lambda: store.flows(status="running", since=timedelta(days=1)),
        ),
        (
            "flows(tenant, labels={region: eu})",
            lambda: store.flows(tenant=TENANT, labels={"region": "eu"}),
        ),
        (
            "flows(labels={region: eu, plan: pro})",
            lambda: store.flows(labels={"region": "eu", "plan": "pro"}),
        ),
        ("flows(status=failed, limit=50)", lambda: store.flows(status="failed", limit=50)),
        ("flow(id)", lambda: store.flow(some_id)),
        ("stats(since=1d)", lambda: store.stats(since=timedelta(days=1))),
    ]


# (cold wall, median wall, median CPU, rows), seconds
Timing = tuple[float, float, float, int]

TARGETS = {"stats(since=1d)": 1.0, "flow(id)": 0.1}  # every flows(...) query: 0.1 s


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any], runs: int = 5) -> tuple[float, float, float, Any]:
    began = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - began
    walls, cpus = [], []
    for _ in range(runs):
        cpu, began = _cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - began)
        cpus.append(_cpu() - cpu)
    return cold, statistics.median(walls), statistics.median(cpus), result


def measure(store: Any) -> dict[str, Timing]:
    some_id = store.flows(tenant=TENANT, limit=1)[0].id
    out: dict[str, Timing] = {}
    for label, fn in queries(store, some_id):
        cold, median, cpu, result = timed(fn)
        out[label] = (cold, median, cpu, len(result) if isinstance(result, list) else 1)
    return out


def fixed_cost(store: Any) -> tuple[float, float]:
    """chDB's cost of a query that does nothing: `SELECT 1` through the store's transport."""
    _, median, cpu, _ = timed(lambda: store._transport.rows("SELECT 1"), runs=21)
    return median, cpu


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _cell(t: Timing | None) -> str:
    return f"{t[1] * 1000:7.1f} ({t[2] * 1000:6.1f})" if t else " " * 11 + "-" + " " * 4


def _chdb_ready(chdb_dir: str, database: str, flows: int) -> bool:
    """A store kept from an earlier run: the rollup at this version and every flow in it."""
    if not os.path.isdir(chdb_dir):
        return False
    transport = ChdbTransport(Target("chdb", database, path=chdb_dir))
    try:
        if migrate.current_version(transport, database) != migrate.SCHEMA_VERSION:
            return False
        rows = transport.rows(
            render("SELECT uniqExact(flow_id) AS n FROM {db}.dashfrog_flow_ids", database=database)
        )
        return bool(rows) and int(rows[0]["n"]) == flows
    except Exception:
        return False
    finally:
        transport.close()


def run(sizes: list[int], skip_sqlite_above: int | None = None, data_dir: str | None = None) -> int:
    sqlite_bench.TENANTS = TENANTS  # the same tenant spread on both sides
    results: dict[int, dict[str, dict[str, Timing]]] = {}
    fixed: tuple[float, float] = (0.0, 0.0)
    print(f"start: {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = data_dir or tmp
        os.makedirs(root, exist_ok=True)
        chdb_dir = os.path.join(root, f"chdb-v{migrate.SCHEMA_VERSION}")
        for n in sizes:
            results[n] = {}
            if skip_sqlite_above is None or n <= skip_sqlite_above:
                path = os.path.join(root, f"flows-{n}.db")
                if data_dir and os.path.exists(path):
                    print(f"sqlite  {n:>9,} flows: kept from an earlier run ({path})", flush=True)
                else:
                    took = sqlite_bench.write_direct(path, n)
                    print(f"sqlite  write {n:>9,} flows: {took:7.1f} s", flush=True)
                with FlowStore(path) as store:
                    results[n]["sqlite"] = measure(store)
            database = f"bench_{n}"
            if data_dir and _chdb_ready(chdb_dir, database, n):
                print(f"chdb    {n:>9,} flows: kept from an earlier run ({chdb_dir})", flush=True)
            else:
                took = write_chdb(chdb_dir, database, n)
                print(
                    f"chdb    write {n:>9,} flows (8 exporter rows each): {took:7.1f} s", flush=True
                )
            with FlowStore(f"chdb://{chdb_dir}?database={database}") as store:
                assert store.count() == n, store.count()
                results[n]["chdb"] = measure(store)
                fixed = fixed_cost(store)
    labels = [label for label, _ in queries(None, "")]
    small, large = min(sizes), max(sizes)
    print(
        f"\nchDB fixed cost per query (SELECT 1 through the store, median of 21): "
        f"{fixed[0] * 1000:.2f} ms ({fixed[1] * 1000:.2f} ms CPU)"
    )
    print(f"{TENANTS:,} tenants; median of 5, ms wall (ms CPU)")
    head = f"  {'query':<40}"
    for n in sizes:
        if "sqlite" in results[n]:
            head += f" {'SQLite ' + format(n, ','):>19}"
        head += f" {'chDB ' + format(n, ','):>19}"
    if len(sizes) > 1:
        head += f"  chDB {large // small}x flows"
    print(head + "  target")
    for label in labels:
        line = f"  {label:<40}"
        for n in sizes:
            if "sqlite" in results[n]:
                line += f" {_cell(results[n]['sqlite'].get(label)):>19}"
            line += f" {_cell(results[n]['chdb'].get(label)):>19}"
        if len(sizes) > 1:
            a, b = results[small]["chdb"][label][1], results[large]["chdb"][label][1]
            line += f"  {b / a:12.2f}x"
        target = TARGETS.get(label, 0.1 if label.startswith("flows(") else None)
        line += f"  {'<' + format(target * 1000, '.0f') + ' ms' if target else ''}"
        print(line)
    worst_list = max(
        (t[1], label) for label, t in results[large]["chdb"].items() if label.startswith("flows(")
    )
    stats = results[large]["chdb"]["stats(since=1d)"]
    print(
        f"\nchDB at {large:,} flows: slowest list query {worst_list[0] * 1000:.1f} ms "
        f"({worst_list[1]}; target 100 ms), stats {stats[1] * 1000:.1f} ms (target 1000 ms)"
    )
    print(f"end: {_load()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--sqlite-up-to", type=int, help="skip SQLite above this size (its writes take longest)"
    )
    parser.add_argument("--data-dir", help="keep the generated stores here and reuse them")
    args = parser.parse_args(argv)
    random.seed(42)
    return run([int(s) for s in args.sizes.split(",")], args.sqlite_up_to, args.data_dir)


if __name__ == "__main__":
    raise SystemExit(main())
