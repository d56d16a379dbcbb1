"""The flow store's queries on SQLite and on ClickHouse (chDB) side by side, at several sizes.

    .venv/bin/python benchmarks/store.py --chdb [--sizes 100000,1000000]
    .venv/bin/python benchmarks/store_backends.py [--sizes 100000,1000000]

For each size N: N flows (1,000 tenants; 85 % completed, 10 % failed, 5 % running; started over
the last 3 days; two labels each). SQLite gets them through its writer (store.py's generator);
ClickHouse gets the rows the collector's clickhouse exporter would write for the same shape of
flow, four spans (the flow and three steps) and four events (flow.start and three step.start) a
flow, generated inside ClickHouse (INSERT ... SELECT FROM numbers(N)) so the materialized views
of the rollup do the work they do in production. Then the same queries on both, cold and the
median of 5, and for ClickHouse the ratio between the largest and the smallest size: a query
with a tenant filter should not grow with the table.
"""

from __future__ import annotations

import argparse
import os
import random
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


def measure(store: Any) -> dict[str, tuple[float, float, int]]:
    some_id = store.flows(tenant=TENANT, limit=1)[0].id
    out: dict[str, tuple[float, float, int]] = {}
    for label, fn in queries(store, some_id):
        cold, median, result = sqlite_bench.timed(fn)
        out[label] = (cold, median, len(result) if isinstance(result, list) else 1)
    return out


def run(sizes: list[int], skip_sqlite_above: int | None = None) -> int:
    sqlite_bench.TENANTS = TENANTS  # the same tenant spread on both sides
    results: dict[int, dict[str, dict[str, tuple[float, float, int]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        chdb_dir = os.path.join(tmp, "chdb")
        for n in sizes:
            results[n] = {}
            if skip_sqlite_above is None or n <= skip_sqlite_above:
                path = os.path.join(tmp, f"flows-{n}.db")
                took = sqlite_bench.write_direct(path, n)
                print(f"sqlite  write {n:>9,} flows: {took:7.1f} s", flush=True)
                with FlowStore(path) as store:
                    results[n]["sqlite"] = measure(store)
            database = f"bench_{n}"
            took = write_chdb(chdb_dir, database, n)
            print(f"chdb    write {n:>9,} flows (8 exporter rows each): {took:7.1f} s", flush=True)
            with FlowStore(f"chdb://{chdb_dir}?database={database}") as store:
                assert store.count() == n, store.count()
                results[n]["chdb"] = measure(store)
    labels = [label for label, _ in queries(None, "")]
    for n in sizes:
        print(
            f"\n{n:,} flows ({TENANTS} tenants)        SQLite cold / median     chDB cold / median"
        )
        for label in labels:
            cells = []
            for backend in ("sqlite", "chdb"):
                got = results[n].get(backend, {}).get(label)
                cells.append(
                    f"{got[0] * 1000:8.1f} / {got[1] * 1000:7.1f} ms" if got else " " * 22 + "-"
                )
            print(f"  {label:<40} {cells[0]}   {cells[1]}")
    worst_list, worst_stats = 0.0, 0.0
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        print(f"\nchDB median ratio {large:,} / {small:,} flows (table grew {large / small:.0f}x)")
        for label in labels:
            a, b = results[small]["chdb"][label][1], results[large]["chdb"][label][1]
            print(f"  {label:<40} {b / a:6.2f}x")
    for label, (_, median, _) in results[max(sizes)]["chdb"].items():
        if label.startswith("flows("):
            worst_list = max(worst_list, median)
        elif label.startswith("stats"):
            worst_stats = max(worst_stats, median)
    print(
        f"\nchDB at {max(sizes):,} flows: slowest list query {worst_list * 1000:.1f} ms "
        f"(target 100 ms), stats {worst_stats * 1000:.1f} ms (target 1000 ms)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--sqlite-up-to", type=int, help="skip SQLite above this size (its writes take longest)"
    )
    args = parser.parse_args(argv)
    random.seed(42)
    return run([int(s) for s in args.sizes.split(",")], args.sqlite_up_to)


if __name__ == "__main__":
    raise SystemExit(main())
