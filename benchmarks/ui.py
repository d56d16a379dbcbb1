"""Benchmark of `dashfrog ui`: server time of its pages on a large store, a 1,000-step flow,
and the server CPU that live updates cost while 1,000 flows run.

    .venv/bin/python benchmarks/ui.py [--flows 1000000] [--path FILE] [--live-seconds 30]
    .venv/bin/python benchmarks/ui.py --cache DIR [--baseline-flows 100000]
                                 # stores built once in bulk (benchmarks/store.py --cache),
                                 # pages timed on both sizes side by side (ratio)
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
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def poller(base: str, paths: list[str], stop: threading.Event, counts: dict[str, int]) -> None:
    """What an open page's htmx does: GET its live URL every 2 s; follow the URL it is given."""
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            for k, path in enumerate(paths):
                r = client.get(path)
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


def time_pages(path: str, big: str) -> dict[str, tuple[float, float, int]]:
    """The pages' (cold ms, median ms, bytes) from a `dashfrog ui` process of its own."""
    port = free_port()
    server = ManagedProcess(
        [sys.executable, "-m", "dashfrog_sdk.cli", "ui", "--store", path, "--port", str(port)],
        env={k: None for k in os.environ if k.startswith(("DASHFROG_", "OTEL_"))},
        cwd=ROOT,
        name="dashfrog-ui",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), timeout=60, message=lambda: server.log_text())
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
        "--store", help="time the pages of this existing store (any backend) and stop there"
    )
    args = parser.parse_args()
    if args.store:
        return pages_only(args.store)
    tmp = None if args.path else tempfile.TemporaryDirectory()
    path = args.path or os.path.join(tmp.name, "flows.db")  # type: ignore[union-attr]
    ok = True
    try:
        if args.cache:
            working_copy(cached_store(args.cache, args.flows), path)
            print(f"store   {path}: a copy of the cached {args.flows:,}-flow store")
        else:
            fill(path, args.flows)
        big = big_flow(path)
        live = running_flows(path, 1000)
        with FlowStore(path) as store:
            total = store.count()
        baseline: dict[str, float] = {}
        if args.cache and args.baseline_flows:
            small = path + ".baseline.db"
            working_copy(cached_store(args.cache, args.baseline_flows), small)
            try:
                baseline = {
                    label: median
                    for label, (_, median, _) in time_pages(small, big_flow(small)).items()
                }
            finally:
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(small + suffix):
                        os.remove(small + suffix)
        figures = time_pages(path, big)
        print(f"\npages over {total:,} flows (server: dashfrog ui on SQLite)")
        head = f"{args.baseline_flows:,} flows" if baseline else ""
        print(
            f"  {'page':<28} {'cold':>9} {'median of 5':>12} {'target':>9}  {'bytes':>7} "
            f"{head:>14} {'ratio' if baseline else '':>6}"
        )
        for label, (cold, median, size) in figures.items():
            target = PAGES_TARGETS.get(label, 0.0)
            verdict = ""
            if target:
                verdict = "ok" if median < target else "TOO SLOW"
                ok = ok and median < target
            shown = f"{target:.0f} ms" if target else "-"
            extra = ""
            if label in baseline:
                extra = f"{baseline[label]:11.1f} ms {median / baseline[label]:5.1f}x"
            print(
                f"  {label:<28} {cold:7.1f} ms {median:9.1f} ms {shown:>9}  {size:>7} {extra}  "
                f"{verdict}"
            )
        port = free_port()
        server = ManagedProcess(
            [sys.executable, "-m", "dashfrog_sdk.cli", "ui", "--store", path, "--port", str(port)],
            env={k: None for k in os.environ if k.startswith(("DASHFROG_", "OTEL_"))},
            cwd=ROOT,
            name="dashfrog-ui",
        ).start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _up(base), timeout=60, message=lambda: server.log_text())
            assert server.pid is not None
            # -- live updates ------------------------------------------------------------------
            stop_writer = multiprocessing.Event()
            writer = multiprocessing.Process(target=updater, args=(path, live, stop_writer))
            writer.start()
            stop = threading.Event()
            counts: dict[str, int] = {}
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
                for flow_id, _ in live[:10]:
                    found = re.search(r'hx-get="([^"]+)"', client.get(f"/flows/{flow_id}").text)
                    assert found
                    live_urls.append(found.group(1).replace("&amp;", "&"))
            threads = [
                threading.Thread(target=poller, args=(base, [u], stop, counts)) for u in live_urls
            ]
            for t in threads:
                t.start()
            time.sleep(POLL_S * 2)  # every page has polled once: the step caches are warm
            before, began = cpu_seconds(server.pid), time.monotonic()
            time.sleep(args.live_seconds)
            used, wall = cpu_seconds(server.pid) - before, time.monotonic() - began
            stop.set()
            for t in threads:
                t.join()
            stop_writer.set()
            writer.join(30)
            share = 100 * used / wall
            verdict = "ok" if share < 5 else "TOO MUCH"
            ok = ok and share < 5
            print(
                f"\nlive updates: 1,000 running flows changing step every 5 s, "
                f"{len(live_urls)} open pages polling every {POLL_S:.0f} s "
                f"({counts.get('200', 0)} fresh answers, {counts.get('204', 0)} unchanged):\n"
                f"  viewer CPU {used:.2f} s in {wall:.0f} s = {share:.1f} % of one core "
                f"(target 5 %): {verdict}"
            )
        finally:
            server.stop()
    finally:
        if tmp is not None:
            tmp.cleanup()
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


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
