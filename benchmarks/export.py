"""Export to a real collector: sustained throughput without a drop, and memory during an outage.

    .venv/bin/python benchmarks/export.py [--protocol grpc] [--seconds 10] [--outage 30]

The application runs in a child process (its own GIL), exporting to a real rotel collector on
loopback, which forwards to the test receiver in this process; every flow is checked for on
the receiver side. A flow is one flow span and three step spans (4 spans) plus four lifecycle
events (log records) and its automatic metrics.

1. **Sustained rate**: the child runs flows as fast as one thread can for ``--seconds``; if
   anything was dropped, it retries at 90 % of the rate that was exported, until a run drops
   nothing and the receiver has every flow. Prints flows/s (and spans/s).
2. **Outage**: at that rate, the collector is killed for ``--outage`` seconds, then restarted.
   Prints the child's RSS before and its peak during the outage (sampled every 100 ms), the
   per-flow latency on the calling thread during the outage, what was buffered and dropped,
   and how long delivery of the buffered data took after the restart.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# -- the application (child process) -----------------------------------------------------------


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)  # dashfrog_sdk's warnings, on stderr
    import dashfrog_sdk
    from dashfrog_sdk import flow, step
    from dashfrog_sdk.exporting import stats

    dashfrog_sdk.setup()
    phase = {"name": "warmup"}
    gc_pause: dict[str, float] = {}
    gc_start = [0.0]

    def on_gc(stage: str, info: dict[str, Any]) -> None:  # the longest collection per phase
        if stage == "start":
            gc_start[0] = time.perf_counter()
        else:
            took = time.perf_counter() - gc_start[0]
            gc_pause[phase["name"]] = max(gc_pause.get(phase["name"], 0.0), took)

    gc.callbacks.append(on_gc)
    latencies: dict[str, list[float]] = {}
    peak: dict[str, int] = {}
    produced = {"n": 0}
    stop = threading.Event()

    def one(i: int) -> None:
        with flow.start("bench", tenant=f"t{i % 50}", region="eu"):
            for name in ("validate", "charge", "ship"):
                with step.start(name):
                    pass

    def load(rate: float, seconds: float | None) -> None:
        period = 1.0 / rate if rate else 0.0
        start = next_at = time.perf_counter()
        i = 0
        while not stop.is_set() and (seconds is None or time.perf_counter() - start < seconds):
            t0 = time.perf_counter()
            one(i)
            latencies.setdefault(phase["name"], []).append(time.perf_counter() - t0)
            i += 1
            produced["n"] = i
            if period:
                next_at += period
                time.sleep(max(0.0, next_at - time.perf_counter()))

    def sample() -> None:
        while not stop.is_set():
            name = phase["name"]
            peak[name] = max(peak.get(name, 0), _rss_kb())
            time.sleep(0.1)

    def summary(name: str) -> dict[str, float]:
        lat = sorted(latencies.get(name, [0.0]))
        return {
            "n": len(lat),
            "p50_us": lat[len(lat) // 2] * 1e6,
            "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
            "max_ms": lat[-1] * 1e3,
        }

    reply = lambda obj: print(json.dumps(obj), flush=True)  # noqa: E731
    reply({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "run":  # flat out or paced, for a fixed time, then flush
            t0 = time.perf_counter()
            phase["name"] = "run"
            latencies.clear()
            load(cmd["rate"], cmd["seconds"])
            elapsed = time.perf_counter() - t0
            dashfrog_sdk.flush(30)
            reply({"flows": len(latencies["run"]), "elapsed": elapsed, "stats": stats()})
        elif cmd["op"] == "start":  # paced load in the background, phases set by the parent
            phase["name"] = "up"
            latencies.clear()
            gc_pause.clear()
            threading.Thread(target=sample, daemon=True).start()
            threading.Thread(target=load, args=(cmd["rate"], None), daemon=True).start()
            reply({"ok": True})
        elif cmd["op"] == "phase":
            phase["name"] = cmd["name"]
            reply({"stats": stats(), "rss_kb": _rss_kb()})
        elif cmd["op"] == "stop":
            stop.set()
            time.sleep(0.2)
            reply(
                {
                    "flows": produced["n"],
                    "stats": stats(),
                    "peak_kb": peak,
                    "latency": {name: summary(name) for name in latencies},
                    "gc_ms": {name: pause * 1e3 for name, pause in gc_pause.items()},
                }
            )
        elif cmd["op"] == "exit":
            return


# -- the harness (this process) ----------------------------------------------------------------


class Child:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark child died")
        result: dict[str, Any] = json.loads(line)
        return result

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, RuntimeError):
            self.call(op="exit")
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", default="grpc", choices=["grpc", "http/protobuf"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--outage", type=float, default=30.0)
    args = parser.parse_args()

    from tests.support import clean_env
    from tests.support.collector import RotelCollector, collector_env

    with RotelCollector() as collector:
        service = f"bench-{uuid.uuid4().hex[:8]}"
        env = clean_env()
        env |= collector_env(collector, args.protocol, fast_export=False)
        env |= {"OTEL_SERVICE_NAME": service, "PYTHONPATH": str(ROOT), "DASHFROG_STORE": "off"}
        receiver = collector.receiver

        def delivered() -> int:
            return sum(
                1
                for s in receiver.spans
                if s.name == "flow bench" and s.resource.get("service.name") == service
            )

        print(f"rotel collector on loopback, OTLP/{args.protocol}, {os.cpu_count()} CPUs")
        app = Child(env)
        rate, result, dropped_before = 0.0, {}, 0
        for attempt in range(5):
            receiver.clear()
            result = app.call(op="run", rate=rate, seconds=args.seconds)
            flows, elapsed = result["flows"], result["elapsed"]
            deadline = time.monotonic() + 30
            while delivered() < flows and time.monotonic() < deadline:
                time.sleep(0.1)
            s = result["stats"]
            total = s["traces"]["dropped"] + s["logs"]["dropped"]
            dropped, dropped_before = total - dropped_before, total
            label = "flat out" if not rate else f"paced at {rate:.0f}/s"
            print(
                f"  run {attempt + 1} ({label}): {flows / elapsed:,.0f} flows/s produced, "
                f"{delivered():,}/{flows:,} flows at the receiver, {dropped} items dropped"
            )
            if dropped == 0 and delivered() >= flows:
                break
            rate = 0.9 * (flows - s["traces"]["dropped"] / 4) / elapsed
        sustained = result["flows"] / result["elapsed"]
        print(
            f"sustained: {sustained:,.0f} flows/s ({sustained * 4:,.0f} spans/s + "
            f"{sustained * 4:,.0f} events/s) for {args.seconds:.0f} s, 0 dropped"
        )

        pace = sustained * 0.9  # a little headroom: the outage run adds RSS sampling
        app.call(op="start", rate=pace)
        time.sleep(5)
        before = app.call(op="phase", name="outage")
        collector.kill()
        t_kill = time.monotonic()
        time.sleep(args.outage)
        during = app.call(op="phase", name="recovery")
        collector.restart()
        t_back = time.monotonic()
        while app.call(op="phase", name="recovery")["stats"]["traces"]["queued"] > 2_000:
            time.sleep(0.2)
        drained = time.monotonic() - t_back
        end = app.call(op="stop")
        app.close()

        lat, peak, st = end["latency"]["outage"], end["peak_kb"], end["stats"]
        print(
            f"outage of {t_back - t_kill:.0f} s at {pace:,.0f} flows/s "
            f"({int(pace * args.outage):,} flows while down):"
        )
        print(f"  RSS before the outage: {before['rss_kb'] / 1024:.1f} MiB")
        print(f"  peak RSS during it:    {peak.get('outage', 0) / 1024:.1f} MiB")
        print(
            f"  queued at the restart: {during['stats']['traces']['queued']:,} spans, "
            f"{during['stats']['logs']['queued']:,} events"
        )
        print(
            f"  dropped (queue full):  {st['traces']['dropped']:,} spans, "
            f"{st['logs']['dropped']:,} events"
        )
        up = end["latency"]["up"]
        print(
            f"  flow latency on the calling thread while down: p50 {lat['p50_us']:.0f} us, "
            f"p99 {lat['p99_us']:.0f} us, max {lat['max_ms']:.1f} ms (collector up: p50 "
            f"{up['p50_us']:.0f} us, p99 {up['p99_us']:.0f} us, max {up['max_ms']:.1f} ms)"
        )
        gc_ms = end["gc_ms"]
        print(
            f"  longest garbage collection: {gc_ms.get('outage', 0):.0f} ms while down "
            f"(the backlog is Python objects), {gc_ms.get('up', 0):.0f} ms while up"
        )
        print(f"  backlog delivered {drained:.1f} s after the restart")


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        main()
