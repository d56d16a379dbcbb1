"""A scripted application for the export tests, run as a subprocess (see conftest.App).

It configures dashfrog_sdk from its environment, prints ``{"ready": ...}``, then answers one
JSON command per stdin line with one JSON line on stdout. ``python app.py --script CODE`` runs
CODE instead (for the exit tests, where the process must end by itself).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

import dashfrog_sdk
from dashfrog_sdk import flow, metrics, step
from dashfrog_sdk.exporting import stats


def run_flows(n: int, name: str = "order", tenant: str = "acme", steps: int = 1) -> dict[str, Any]:
    """`n` flows of `steps` steps; returns their ids and the slowest flow's latency."""
    ids, worst = [], 0.0
    for i in range(n):
        t0 = time.perf_counter()
        with flow.start(name, tenant=tenant, seq=i) as flow_id:
            for s in range(steps):
                with step.start(f"step{s}"):
                    pass
        worst = max(worst, time.perf_counter() - t0)
        ids.append(flow_id)
    return {"ids": ids, "max_ms": worst * 1000}


def threads(threads: int, n: int, events: int = 1) -> dict[str, Any]:
    """`threads` threads, each running `n` flows flat out (a step and `events` custom events,
    so log records too, each); the ids, and the slowest flow's latency."""
    ids: list[list[str]] = [[] for _ in range(threads)]
    latencies: list[float] = []
    start = threading.Barrier(threads)

    def produce(k: int) -> None:
        start.wait()
        for i in range(n):
            t0 = time.perf_counter()
            with flow.start("busy", tenant="acme", seq=i) as flow_id, step.start("work"):
                for e in range(events):
                    flow.event("tick", n=e)
            latencies.append(time.perf_counter() - t0)
            ids[k].append(flow_id)

    workers = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lat = sorted(latencies)
    return {
        "ids": [flow_id for per in ids for flow_id in per],
        "s": time.perf_counter() - t0,
        "max_ms": lat[-1] * 1000,
    }


class Load:
    """Flows at a steady rate on a background thread, with per-flow latency."""

    def __init__(self, rate: float, name: str) -> None:
        self.rate, self.name = rate, name
        self.ids: list[str] = []
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        period, next_at = 1.0 / self.rate, time.perf_counter()
        while not self.stop.is_set():
            t0 = time.perf_counter()
            with flow.start(self.name, tenant="acme") as flow_id, step.start("work"):
                pass
            self.latencies.append(time.perf_counter() - t0)
            self.ids.append(flow_id)
            next_at += period
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(10)
        lat = sorted(self.latencies)
        return {
            "ids": self.ids,
            "max_ms": lat[-1] * 1000 if lat else 0.0,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0,
        }


_load: Load | None = None
_counter = metrics.Counter("test.orders", labels=["region"], unit="{order}")


def handle(op: str, args: dict[str, Any]) -> Any:
    global _load
    if op == "flows":
        return run_flows(**args)
    if op == "threads":
        return threads(**args)
    if op == "load_start":
        _load = Load(args.get("rate", 200), args.get("name", "load"))
        return {"ok": True}
    if op == "load_mark":
        assert _load is not None
        return len(_load.ids)
    if op == "load_stop":
        assert _load is not None
        return _load.finish()
    if op == "count":
        t0 = time.perf_counter()
        _counter.add(args.get("value", 1), tenant=args["tenant"], region=args.get("region", "eu"))
        return {"ms": (time.perf_counter() - t0) * 1000}
    if op == "stats":
        return stats()
    if op == "flush":
        t0 = time.perf_counter()
        ok = dashfrog_sdk.flush(args.get("timeout", 10))
        return {"ok": ok, "s": time.perf_counter() - t0}
    if op == "exec":
        scope: dict[str, Any] = {}
        exec(args["code"], globals(), scope)
        return scope.get("result")
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    # A production app configures logging. (Without it, the SDK's logging capture handler on the
    # root logger hides Python's last-resort stderr handler, so warnings would not show.)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if os.environ.get("TEST_DEBUG_LOG"):  # the exporters' own messages, for failure reports
        logging.getLogger("dashfrog_sdk").setLevel(logging.DEBUG)
    if len(sys.argv) > 2 and sys.argv[1] == "--script":
        exec(sys.argv[2], globals())
        return
    dashfrog_sdk.setup()
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "exit":
            break
        try:
            reply = {"result": handle(op, cmd)}
        except Exception as exc:  # the test sees it in the reply
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
