"""Benchmark of `dashfrog ui`: server time of its pages on a large store, a 1,000-step flow,
and the server CPU that live updates cost while 1,000 flows run; on SQLite, and with --chdb on
ClickHouse too, side by side.

    .venv/bin/python benchmarks/ui.py [--flows 1000000] [--path FILE] [--live-seconds 30]
    .venv/bin/python benchmarks/ui.py --cache DIR [--baseline-flows 100000] [--chdb DIR2]
                                 # SQLite stores built once in bulk (benchmarks/store.py
                                 # --cache), pages timed on both sizes side by side (ratio);
                                 # --chdb: the same on ClickHouse, its store kept in DIR2
    .venv/bin/python benchmarks/ui.py --store URL      # pages only, on an existing store
                                                       # (e.g. ClickHouse: clickhouse://...)

1. Fills a SQLite store with ``--flows`` flows through the store writer (the rows of
   benchmarks/store.py: 3 steps and 2 labels each, 500 tenants, 85 % completed, 10 % failed,
   5 % running), plus one flow with 1,000 steps. ``--path`` keeps the file for the next run
   (it is reused when it already holds that many flows).
2. Starts the real `dashfrog ui` (uvicorn, a process of its own) and times its pages over
   loopback HTTP: the first request (cold: no step cache, cold page cache) and the median of 5.
   Targets: the flows page under 300 ms, the 1,000-step flow under 500 ms.
3. Live updates: 1,000 running flows change step every 5 s (a writer process, 200 step
   changes a second), while 10 open flows pages and 10 open flow pages poll every 2 s as htmx
   does; the viewer's CPU time over ``--live-seconds`` (from /proc) is the cost, against a
   target of 5 % of one core.
4. With ``--chdb DIR``: 1. to 3. again on ClickHouse. chDB (the real engine) runs behind a
   ClickHouse HTTP endpoint on loopback (tests/support/chdb_http.py, a process of its own);
   the viewer reads it with clickhouse-connect as it reads a server. The store gets the rows
   the collector's clickhouse exporter writes: the flows of benchmarks/store_backends.py
   (1,000 tenants) generated in ClickHouse through the rollup's materialized views, kept in
   DIR for the next run; the 1,000-step flow; and the live flows' step spans and
   ``dashfrog.step.start`` events, inserted through the endpoint while the pages poll. The
   endpoint's own CPU is printed beside the viewer's.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from store import (  # noqa: E402  (benchmarks/store.py: the same rows)
    _flow_batch,
    cached_store,
    working_copy,
)

from dashfrog_sdk import conventions as c  # noqa: E402
from dashfrog_sdk.store import FlowStore, StoreWriter  # noqa: E402
from dashfrog_sdk.store.convert import Batch, FlowRow, StepRow  # noqa: E402
from tests.support.procs import ManagedProcess, free_port, wait_until  # noqa: E402

BATCH = 5000
POLL_S = 2.0
LIVE_FLOWS = 1000  # running flows while the live updates are measured


def fill(path: str, flows: int) -> None:
    if os.path.exists(path):
        with FlowStore(path) as store:
            if store.count() >= flows:
                print(f"store   {path}: reusing {store.count():,} flows")
                return
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    writer = StoreWriter(path)
    rng = random.Random(42)
    now = time.time_ns()
    began = time.perf_counter()
    for first in range(0, flows, BATCH):
        assert writer.write(_flow_batch(rng, first, min(BATCH, flows - first), now))
        if first and first % 100_000 == 0:
            print(f"  ... {first:,} flows", flush=True)
    writer.close()
    print(f"store   {flows:,} flows written in {time.perf_counter() - began:.0f} s")


def big_flow(path: str, steps: int = 1000) -> str:
    """One completed flow of `steps` steps across three services, a third of them nested."""
    rng = random.Random(7)
    flow_id = f"{rng.getrandbits(128):032x}"
    start = time.time_ns() - 60 * 10**9
    batch = Batch()
    t = start
    parent = None
    for i in range(steps):
        span = f"{rng.getrandbits(64):016x}"
        nested = i % 3 == 2 and parent is not None
        batch.steps.append(
            StepRow(
                span_id=span,
                flow_id=flow_id,
                name=f"step_{i:04d}",
                status=c.COMPLETED,
                service=("api", "billing", "shipping")[i % 3],
                parent_span_id=parent if nested else None,
                start_ns=t,
                end_ns=t + 5_000_000,
            )
        )
        parent = span if not nested else parent
        t += 6_000_000
    batch.flows.append(
        FlowRow(
            flow_id=flow_id,
            name="big_import",
            tenant="tenant-big",
            status=c.COMPLETED,
            start_ns=start,
            end_ns=t,
            service="api",
            labels={"size": "1000"},
        )
    )
    writer = StoreWriter(path)
    assert writer.write(batch)
    writer.close()
    return flow_id


def timed(client: httpx.Client, path: str, runs: int = 5) -> tuple[float, float, int]:
    began = time.perf_counter()
    r = client.get(path)
    cold = time.perf_counter() - began
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    took = []
    for _ in range(runs):
        began = time.perf_counter()
        client.get(path)
        took.append(time.perf_counter() - began)
    return cold * 1000, statistics.median(took) * 1000, len(r.content)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def updater(
    path: str, flows: list[tuple[str, int]], stop: multiprocessing.synchronize.Event
) -> None:
    """Moves each running flow to its next step every 5 s, in batches (200 changes a second)."""
    writer = StoreWriter(path)
    rng = random.Random(3)
    current: dict[str, StepRow] = {}
    step_no = dict.fromkeys((f for f, _ in flows), 0)
    per_tick = max(1, len(flows) // 50)  # 50 ticks of 0.1 s: every flow once per 5 s
    i = 0
    while not stop.is_set():
        batch = Batch()
        now = time.time_ns()
        for _ in range(per_tick):
            flow_id, _ = flows[i % len(flows)]
            i += 1
            old = current.get(flow_id)
            if old is not None:
                old.status, old.end_ns = c.COMPLETED, now
                batch.steps.append(old)
            step_no[flow_id] += 1
            new = StepRow(
                span_id=f"{rng.getrandbits(64):016x}",
                flow_id=flow_id,
                name=f"stage_{step_no[flow_id]}",
                service="worker",
                start_ns=now,
            )
            current[flow_id] = new
            batch.steps.append(new)
            batch.flows.append(FlowRow(flow_id=flow_id))  # as a step's start event: "seen now"
        writer.write(batch)
        stop.wait(0.1)
    writer.close()


def running_flows(path: str, count: int) -> list[tuple[str, int]]:
    rng = random.Random(11)
    now = time.time_ns()
    batch = Batch()
    out = []
    for i in range(count):
        flow_id = f"{rng.getrandbits(128):032x}"
        start = now - rng.randrange(1, 600) * 10**9
        batch.flows.append(
            FlowRow(
                flow_id=flow_id,
                name="live_job",
                tenant=f"live-{i % 20}",
                status=c.RUNNING,
                start_ns=start,
                service="api",
                labels={"batch": str(i % 10)},
            )
        )
        out.append((flow_id, start))
    writer = StoreWriter(path)
    assert writer.write(batch)
    writer.close()
    return out


def poller(
    base: str,
    paths: list[str],
    stop: threading.Event,
    counts: dict[str, int],
    waits: list[float],
) -> None:
    """What an open page's htmx does: GET its live URL every 2 s after the last answer; follow
    the URL it is given. `waits`: how long each answer took."""
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            for k, path in enumerate(paths):
                began = time.perf_counter()
                r = client.get(path)
                waits.append(time.perf_counter() - began)
                counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1
                if r.status_code == 200:
                    found = re.search(r'hx-get="([^"]+)"', r.text)
                    if found:
                        paths[k] = found.group(1).replace("&amp;", "&")
            stop.wait(POLL_S)


PAGES_TARGETS = {
    "flows page 1": 300.0,
    "flows, one tenant": 300.0,
    "flows, failed": 300.0,
    "flows, tenant + failed": 300.0,
    "flows, running": 300.0,
    "flows, label region=eu": 300.0,
    "flows, label cohort=c05": 300.0,
    "flows, tenant + label": 300.0,
    "flows page 2": 300.0,
    "flows, last hour": 300.0,
    "flow with 1,000 steps": 500.0,
}


# -- the same on ClickHouse (--chdb) ---------------------------------------------------------------
# chDB (the real ClickHouse engine) behind tests/support/chdb_http.py, a ClickHouse HTTP endpoint
# process on loopback: the viewer reads it through clickhouse-connect as it reads a ClickHouse
# server in production, and the rows are those the collector's clickhouse exporter writes.

BIG_ID = "b1" * 16


def _span_id(k: str) -> str:
    return f"substring(lower(hex(MD5(concat('big-', toString({k}))))), 1, 16)"


# One completed flow of 1,000 steps across three services, a third of them nested (big_flow()).
_BIG_SPANS = f"""
INSERT INTO {{db}}.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind,
    ServiceName, ScopeName, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT
    fromUnixTimestamp64Nano(toInt64({{start}}) + if(k = 0, 0, (k - 1) * 6000000)),
    '{"b2" * 16}', {_span_id("k")},
    multiIf(k = 0, '', (k - 1) % 3 = 2, {_span_id("k - 1")}, {_span_id("0")}),
    if(k = 0, 'flow big_import', concat('step ', step)),
    'SPAN_KIND_INTERNAL', if(k = 0, 'api', ['api', 'billing', 'shipping'][(k - 1) % 3 + 1]),
    'dashfrog_sdk',
    mapUpdate(map('dashfrog.flow.id', '{BIG_ID}', 'dashfrog.flow.name', 'big_import',
                  'dashfrog.tenant', 'tenant-big', 'dashfrog.label.size', '1000'),
        if(k = 0, map('dashfrog.flow.status', 'completed', 'dashfrog.flow.end_on_exit', 'true'),
               map('dashfrog.step.name', step, 'dashfrog.step.status', 'completed'))),
    toUInt64(if(k = 0, 1000 * 6000000, 5000000)), 'STATUS_CODE_UNSET', ''
FROM (SELECT number AS k, concat('step_', leftPad(toString(k - 1), 4, '0')) AS step
      FROM numbers(1001))
"""


class ClickHouseStore:
    """The benchmark's ClickHouse store: a chDB directory kept under ``--chdb DIR`` across runs
    (a directory per rollup version), served by a ClickHouse HTTP endpoint process while the
    benchmark runs; every write goes through that endpoint, as a collector's would."""

    def __init__(self, data_dir: str, flows: int) -> None:
        from dashfrog_sdk.clickhouse import migrate
        from tests.support import clickhouse as ch

        self.flows = flows
        self.dir = os.path.join(data_dir, f"chdb-v{migrate.SCHEMA_VERSION}")
        self.database = f"ui_{flows}"
        self.proc, self.port = ch.endpoint(self.dir)
        self.url = f"clickhouse://127.0.0.1:{self.port}/{self.database}"
        self._transport: Any = None

    def __enter__(self) -> ClickHouseStore:
        from dashfrog_sdk.clickhouse.connection import HttpTransport, parse_url
        from tests.support import clickhouse as ch

        os.makedirs(self.dir, exist_ok=True)
        self.proc.start()
        try:
            ch.wait_ready(self.proc, self.port)
            self._transport = HttpTransport(parse_url(self.url))
        except BaseException:
            self.proc.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()
        self.proc.stop()

    def command(self, sql: str) -> None:
        from dashfrog_sdk.clickhouse.connection import render

        self._transport.command(render(sql, database=self.database))

    def count(self) -> int:
        with FlowStore(self.url) as store:
            return store.count()

    def prepare(self) -> None:
        """Once per directory: the flows of benchmarks/store_backends.py as exporter rows
        (through the rollup's materialized views, in slices as a collector's batches come)
        and the 1,000-step flow."""
        import store_backends  # benchmarks/store_backends.py: the same rows as store.py --chdb

        from dashfrog_sdk.clickhouse import migrate

        ready = self._transport.rows(
            "SELECT count() AS n FROM system.tables "
            f"WHERE database = '{self.database}' AND name = 'ui_bench_ready'"
        )
        if int(ready[0]["n"]):
            print(f"chdb    {self.dir}: the store of an earlier run", flush=True)
            return
        self._transport.command(f"DROP DATABASE IF EXISTS `{self.database}`")
        migrate.apply(self._transport, self.database)
        now = time.time_ns()
        began = time.perf_counter()
        for first in range(0, self.flows, 100_000):
            count = min(100_000, self.flows - first)
            for template in (store_backends._TRACES, store_backends._LOGS):
                sql = template.replace("FROM numbers({n})", f"FROM numbers({first}, {count})")
                sql = sql.replace("{tenants}", str(store_backends.TENANTS))
                self.command(sql.replace("{now}", str(now)).replace("{n}", str(count)))
        self.command(_BIG_SPANS.replace("{start}", str(now - 60 * 10**9)))
        self.command("CREATE TABLE {db}.ui_bench_ready (done UInt8) ENGINE = TinyLog")
        took = time.perf_counter() - began
        print(f"chdb    {self.flows:,} flows written as exporter rows in {took:.0f} s", flush=True)

    def live_flows(self, count: int) -> list[tuple[str, str, str]]:
        """`count` new running flows (new ids each run, as running_flows()): a flow.start event
        each and no span yet. Returns (flow id, trace id, flow span id) of each."""
        rng = random.Random()
        now = time.time_ns()
        flows, rows = [], []
        for i in range(count):
            flow_id, trace_id = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(128):032x}"
            span_id = f"{rng.getrandbits(64):016x}"
            start = now - rng.randrange(1, 600) * 10**9
            rows.append(
                {
                    "Timestamp": _ch_time(start),
                    "TraceId": trace_id,
                    "SpanId": span_id,
                    "ServiceName": "api",
                    "ScopeName": "dashfrog_sdk",
                    "LogAttributes": _live_attrs(flow_id, i),
                    "EventName": "dashfrog.flow.start",
                }
            )
            flows.append((flow_id, trace_id, span_id))
        _insert(self._transport, self.database, "otel_logs", rows)
        return flows


def _live_attrs(flow_id: str, i: int) -> dict[str, str]:
    return {
        c.FLOW_ID: flow_id,
        c.FLOW_NAME: "live_job",
        c.TENANT: f"live-{i % 20}",
        c.LABEL_PREFIX + "batch": str(i % 10),
    }


def _ch_time(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}"


def _insert(transport: Any, database: str, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        body = "\n".join(json.dumps(r) for r in rows)
        transport.command(
            f"INSERT INTO `{database}`.`{table}` SETTINGS date_time_input_format = 'best_effort' "
            f"FORMAT JSONEachRow\n{body}"
        )


def ch_updater(
    url: str, flows: list[tuple[str, str, str]], stop: multiprocessing.synchronize.Event
) -> None:
    """updater() on ClickHouse: each running flow to its next step every 5 s, in batches
    (200 changes a second), as the exporter writes them: the step that ended as a span, the
    next one's dashfrog.step.start event."""
    from dashfrog_sdk.clickhouse.connection import HttpTransport, parse_url

    target = parse_url(url)
    transport = HttpTransport(target)
    rng = random.Random(3)
    index = {f: i for i, (f, _, _) in enumerate(flows)}
    current: dict[str, tuple[str, str, int]] = {}  # flow id: (span id, step name, start ns)
    step_no = dict.fromkeys(index, 0)
    per_tick = max(1, len(flows) // 50)
    i = 0
    try:
        while not stop.is_set():
            now = time.time_ns()
            spans, events = [], []
            for _ in range(per_tick):
                flow_id, trace_id, flow_span = flows[i % len(flows)]
                i += 1
                attrs = _live_attrs(flow_id, index[flow_id])
                old = current.get(flow_id)
                if old is not None:
                    spans.append(
                        {
                            "Timestamp": _ch_time(old[2]),
                            "TraceId": trace_id,
                            "SpanId": old[0],
                            "ParentSpanId": flow_span,
                            "SpanName": "step " + old[1],
                            "SpanKind": "SPAN_KIND_INTERNAL",
                            "ServiceName": "worker",
                            "ScopeName": "dashfrog_sdk",
                            "SpanAttributes": {
                                **attrs,
                                c.STEP_NAME: old[1],
                                c.STEP_STATUS: c.COMPLETED,
                            },
                            "Duration": now - old[2],
                            "StatusCode": "STATUS_CODE_UNSET",
                        }
                    )
                step_no[flow_id] += 1
                new = (f"{rng.getrandbits(64):016x}", f"stage_{step_no[flow_id]}", now)
                current[flow_id] = new
                events.append(
                    {
                        "Timestamp": _ch_time(now),
                        "TraceId": trace_id,
                        "SpanId": new[0],
                        "ServiceName": "worker",
                        "ScopeName": "dashfrog_sdk",
                        "LogAttributes": {**attrs, c.STEP_NAME: new[1]},
                        "EventName": c.EVENT_STEP_START,
                    }
                )
            _insert(transport, target.database, "otel_traces", spans)
            _insert(transport, target.database, "otel_logs", events)
            stop.wait(0.1)
    finally:
        transport.close()


def _viewer(location: str) -> tuple[ManagedProcess, str]:
    """A real `dashfrog ui` process of its own on `location` (started) and its base URL."""
    port = free_port()
    server = ManagedProcess(
        [sys.executable, "-m", "dashfrog_sdk.cli", "ui", "--store", location, "--port", str(port)],
        env={k: None for k in os.environ if k.startswith(("DASHFROG_", "OTEL_"))},
        cwd=ROOT,
        name="dashfrog-ui",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), timeout=60, message=lambda: server.log_text())
    except BaseException:
        server.stop()
        raise
    return server, base


def time_pages(location: str, big: str) -> dict[str, tuple[float, float, int]]:
    """The pages' (cold ms, median ms, bytes) from a `dashfrog ui` process of its own."""
    server, base = _viewer(location)
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            page2 = re.search(r'class="older" href="([^"]+)"', client.get("/flows").text)
            pages = [
                ("/flows", "flows page 1"),
                ("/flows?tenant=tenant-42", "flows, one tenant"),
                ("/flows?status=failed", "flows, failed"),
                ("/flows?tenant=tenant-42&status=failed", "flows, tenant + failed"),
                ("/flows?status=running", "flows, running"),
                ("/flows?label=region%3Deu", "flows, label region=eu"),
                ("/flows?label=cohort%3Dc05", "flows, label cohort=c05"),
                ("/flows?tenant=tenant-42&label=region%3Deu", "flows, tenant + label"),
                ((page2.group(1).replace("&amp;", "&") if page2 else "/flows"), "flows page 2"),
                ("/flows?window=1h", "flows, last hour"),
                (f"/flows/{big}", "flow with 1,000 steps"),
                ("/?window=1h", "tenants, last hour"),
                ("/?window=1d", "tenants, last day"),
                ("/stats?window=1d", "stats, last day"),
            ]
            return {label: timed(client, url) for url, label in pages}
    finally:
        server.stop()


@dataclass
class Live:
    """What the live updates cost: CPU seconds of the viewer (and of the database process,
    for ClickHouse) over `wall` seconds, and the answers the open pages got."""

    viewer_s: float
    database_s: float | None
    wall: float
    fresh: int
    unchanged: int
    pages: int
    p50_ms: float  # how long an answer took
    p95_ms: float

    @property
    def share(self) -> float:
        return 100 * self.viewer_s / self.wall


def live_updates(
    location: str,
    live_ids: list[str],
    updater: multiprocessing.Process,
    stop_writer: multiprocessing.synchronize.Event,
    seconds: float,
    database_pid: int | None = None,
) -> Live:
    """Open pages polling as htmx does while `updater` moves the running flows along: 10
    flows lists (running, by name, 8 tenants) and 10 flow pages, every POLL_S."""
    server, base = _viewer(location)
    try:
        assert server.pid is not None
        updater.start()
        stop = threading.Event()
        counts: dict[str, int] = {}
        waits: list[float] = []
        threads: list[threading.Thread] = []
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                list_pages = [
                    "/flows?status=running",
                    "/flows?name=live_job",
                    *(f"/flows?tenant=live-{i}" for i in range(8)),
                ]
                live_urls = []
                for url in list_pages:
                    found = re.search(r'hx-get="([^"]+)"', client.get(url).text)
                    assert found, url
                    live_urls.append(found.group(1).replace("&amp;", "&"))
                for flow_id in live_ids[:10]:
                    found = re.search(r'hx-get="([^"]+)"', client.get(f"/flows/{flow_id}").text)
                    assert found, flow_id
                    live_urls.append(found.group(1).replace("&amp;", "&"))
            threads = [
                threading.Thread(target=poller, args=(base, [u], stop, counts, waits))
                for u in live_urls
            ]
            for t in threads:
                t.start()
            time.sleep(POLL_S * 2)  # every page has polled once: the caches are warm
            db_before = cpu_seconds(database_pid) if database_pid else 0.0
            before, began = cpu_seconds(server.pid), time.monotonic()
            counts.clear()
            del waits[:]
            time.sleep(seconds)
            used, wall = cpu_seconds(server.pid) - before, time.monotonic() - began
            db_used = cpu_seconds(database_pid) - db_before if database_pid else None
            answers, took = dict(counts), sorted(waits)
        finally:
            stop.set()
            for t in threads:
                t.join()
            stop_writer.set()
            updater.join(30)
        return Live(
            used,
            db_used,
            wall,
            answers.get("200", 0),
            answers.get("204", 0),
            len(live_urls),
            1000 * took[len(took) // 2] if took else 0.0,
            1000 * took[int(len(took) * 0.95)] if took else 0.0,
        )
    finally:
        server.stop()


def sqlite_run(args: argparse.Namespace) -> tuple[dict[str, tuple[float, float, int]], Live, int]:
    """Pages and live updates on SQLite: (pages, live, flows in the store)."""
    tmp = None if args.path else tempfile.TemporaryDirectory()
    path = args.path or os.path.join(tmp.name, "flows.db")  # type: ignore[union-attr]
    try:
        if args.cache:
            working_copy(cached_store(args.cache, args.flows), path)
            print(f"store   {path}: a copy of the cached {args.flows:,}-flow store")
        else:
            fill(path, args.flows)
        big = big_flow(path)
        live = running_flows(path, LIVE_FLOWS)
        with FlowStore(path) as store:
            total = store.count()
        figures = time_pages(path, big)
        stop_writer = multiprocessing.Event()
        writer = multiprocessing.Process(target=updater, args=(path, live, stop_writer))
        costs = live_updates(path, [f for f, _ in live], writer, stop_writer, args.live_seconds)
        return figures, costs, total
    finally:
        if tmp is not None:
            tmp.cleanup()


def baseline_pages(args: argparse.Namespace) -> dict[str, float]:
    """With --cache: the pages' medians on a cached store of --baseline-flows, for the ratio."""
    if not (args.cache and args.baseline_flows):
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "baseline.db")
        working_copy(cached_store(args.cache, args.baseline_flows), small)
        return {
            label: median for label, (_, median, _) in time_pages(small, big_flow(small)).items()
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--path", help="store file to keep (default: a temporary one)")
    parser.add_argument(
        "--cache",
        help="build the --flows store once in bulk under this directory (benchmarks/store.py "
        "cached_store) and run on a copy of it at --path (or a temporary file)",
    )
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument(
        "--baseline-flows",
        type=int,
        default=100_000,
        help="with --cache: the pages on a cached store of this many flows too, for the ratio",
    )
    parser.add_argument(
        "--chdb",
        metavar="DIR",
        help="also on ClickHouse: chDB behind a ClickHouse HTTP endpoint on loopback, its "
        "store (--flows flows as exporter rows) built once and kept under DIR",
    )
    parser.add_argument(
        "--store", help="time the pages of this existing store (any backend) and stop there"
    )
    args = parser.parse_args()
    if args.store:
        return pages_only(args.store)
    print(f"start: load average {_load()}", flush=True)
    baseline = baseline_pages(args)
    sqlite_pages, sqlite_live, total = sqlite_run(args)
    ch_pages: dict[str, tuple[float, float, int]] = {}
    ch_live: Live | None = None
    if args.chdb:
        with ClickHouseStore(args.chdb, args.flows) as ch:
            ch.prepare()
            ch_total = ch.count()
            ch_pages = time_pages(ch.url, BIG_ID)
            live = ch.live_flows(LIVE_FLOWS)
            stop_writer = multiprocessing.Event()
            writer = multiprocessing.Process(target=ch_updater, args=(ch.url, live, stop_writer))
            ch_live = live_updates(
                ch.url,
                [f for f, _, _ in live],
                writer,
                stop_writer,
                args.live_seconds,
                database_pid=ch.proc.pid,
            )
        print(f"\nClickHouse store: {ch_total:,} flows")
    print(f"end: load average {_load()}")
    return report(total, sqlite_pages, sqlite_live, baseline, ch_pages, ch_live, args)


def report(
    total: int,
    pages: dict[str, tuple[float, float, int]],
    live: Live,
    baseline: dict[str, float],
    ch_pages: dict[str, tuple[float, float, int]],
    ch_live: Live | None,
    args: argparse.Namespace,
) -> int:
    ok = True
    print(f"\npages over {total:,} flows: a real `dashfrog ui` process, cold / median of 5")
    head = f"  {'page':<26} {'SQLite cold':>12} {'median':>9}"
    if ch_pages:
        head += f" {'ClickHouse cold':>16} {'median':>9}"
    head += f" {'target':>8}"
    if baseline:
        head += f" {'SQLite ' + format(args.baseline_flows, ','):>15} {'ratio':>6}"
    print(head)
    for label, (cold, median, _size) in pages.items():
        target = PAGES_TARGETS.get(label, 0.0)
        line = f"  {label:<26} {cold:9.1f} ms {median:6.1f} ms"
        medians = [median]
        if ch_pages and label in ch_pages:
            ch_cold, ch_median, _ = ch_pages[label]
            line += f" {ch_cold:13.1f} ms {ch_median:6.1f} ms"
            medians.append(ch_median)
        line += f" {(format(target, '.0f') + ' ms') if target else '-':>8}"
        if baseline and label in baseline:
            line += f" {baseline[label]:12.1f} ms {median / baseline[label]:5.1f}x"
        if target:
            fine = all(m < target for m in medians)
            ok = ok and fine
            line += "  ok" if fine else "  TOO SLOW"
        print(line)
    rows = [("SQLite", live)] + ([("ClickHouse", ch_live)] if ch_live else [])
    print(
        f"\nlive updates: {LIVE_FLOWS:,} running flows changing step every 5 s, "
        f"{live.pages} open pages polling every {POLL_S:.0f} s, {args.live_seconds:.0f} s:"
    )
    for name, cost in rows:
        verdict = "ok" if cost.share < 5 else "TOO MUCH"
        ok = ok and cost.share < 5
        extra = ""
        if cost.database_s is not None:
            extra = (
                f"; the ClickHouse process {cost.database_s:.2f} s "
                f"= {100 * cost.database_s / cost.wall:.1f} %"
            )
        print(
            f"  {name:<10} viewer CPU {cost.viewer_s:.2f} s = {cost.share:.1f} % of one core "
            f"(target 5 %): {verdict}; {cost.fresh} fresh answers, {cost.unchanged} unchanged "
            f"(a page polls {POLL_S:.0f} s after its last answer: "
            f"{cost.pages * cost.wall / POLL_S:.0f} answers at most), each in "
            f"{cost.p50_ms:.0f} ms (p95 {cost.p95_ms:.0f} ms){extra}"
        )
    return 0 if ok else 1


def pages_only(location: str) -> int:
    """The page timings on a store someone else filled (any backend `FlowStore` opens)."""
    with FlowStore(location) as store:
        total = store.count()
        some = store.flows(limit=1)
    port = free_port()
    server = ManagedProcess(
        [sys.executable, "-m", "dashfrog_sdk.cli", "ui", "--store", location, "--port", str(port)],
        env={k: None for k in os.environ if k.startswith(("DASHFROG_", "OTEL_"))},
        cwd=ROOT,
        name="dashfrog-ui",
    ).start()
    base = f"http://127.0.0.1:{port}"
    ok = True
    try:
        wait_until(lambda: _up(base), timeout=60, message=lambda: server.log_text())
        with httpx.Client(base_url=base, timeout=120) as client:
            pages = [
                ("/flows", "flows page 1", 300.0),
                ("/flows?status=failed", "flows, failed", 300.0),
            ]
            if some:
                pages.append((f"/flows?tenant={some[0].tenant}", "flows, one tenant", 300.0))
                pages.append((f"/flows/{some[0].id}", "one flow", 500.0))
            kind = location.split("://")[0] if "://" in location else "sqlite"
            print(f"pages over {total:,} flows ({kind})")
            for url, label, target in pages:
                cold, median, size = timed(client, url)
                ok = ok and median < target
                print(f"  {label:<28} {cold:7.1f} ms {median:9.1f} ms {target:6.0f} ms  {size:>7}")
    finally:
        server.stop()
    return 0 if ok else 1


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
