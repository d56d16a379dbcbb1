"""Export to a real collector: what a flow costs in production, throughput, threads, outages.

    .venv/bin/python benchmarks/export.py [--parts table,throughput,threads,outage]
        [--flows 20000] [--rounds 3] [--seconds 30] [--outage 30] [--protocol grpc]

Every application runs in a child process (its own GIL), exporting to a real rotel collector on
loopback that this script starts. A flow is one flow span and three step spans (4 spans), a
tenant and two labels, plus the lifecycle events and automatic metrics dashfrog adds.

0. **Table** (``table``): per configuration (benchmarks/production.py: bare OTel, bare OTel with
   dashfrog's attributes, with four log records too, dashfrog with the production defaults,
   and the no-op-exporter / embedded rows), each round in a fresh process: calling-thread CPU,
   whole-process CPU (every thread, flushes included) and wall per flow, and what was dropped;
   medians and ranges over ``--rounds``, ratios against the bare row of the same round. Here
   rotel discards what it receives (its ``blackhole`` exporter), so no receiver competes for
   the two CPUs; "dropped" is what the collector did not acknowledge.

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
import statistics
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


def bench_child(
    config: str, op: str, flows: int, seconds: float, rate: float, threads: int
) -> None:
    """One configuration of benchmarks/production.py in this fresh process; prints JSON."""
    out = os.fdopen(os.dup(1), "w")  # the embedded console writes to stdout: keep ours apart
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.path.insert(0, str(Path(__file__).parent))
    import production

    if op == "table":
        result = production.measure(config, flows)
    else:
        result = production.sustain(config, seconds, rate, threads)
    result["peak_rss_kb"] = _peak_rss_kb()
    out.write(json.dumps(result) + "\n")
    out.flush()


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# -- the harness (this process) ----------------------------------------------------------------


def _blackhole_collector() -> Any:
    """rotel, receiving OTLP as in the tests, discarding instead of forwarding to a receiver."""
    from tests.support.collector import RotelCollector

    class Blackhole(RotelCollector):
        def _args(self) -> list[str]:
            args = [a for a in super()._args() if not a.startswith("--otlp-exporter")]
            return [("--exporter=blackhole" if a == "--exporter=otlp" else a) for a in args]

    return Blackhole()


def _run_bench(env: dict[str, str], config: str, op: str, **kw: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--bench", config, "--op", op]
    for key, value in kw.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["warnings"] = proc.stderr.count("WARNING") + proc.stderr.count("dropping")
    return result


TABLE_ROWS = (
    ("bare", "bare OTel: 4 spans, BatchSpanProcessor, OTLP", "bare"),
    ("bare+attrs", "  + dashfrog's attributes (stock API)", "bare"),
    ("bare+attrs+logs", "  + 4 log records (BatchLogRecordProcessor)", "bare"),
    ("dashfrog", "dashfrog: traces + logs + metrics, defaults", "bare"),
    ("bare-noop", "bare OTel, no-op exporter", "bare-noop"),
    ("dashfrog-noop", "dashfrog, no-op exporters", "bare-noop"),
    ("dashfrog-embedded", "dashfrog embedded default (store+console)", "bare-noop"),
)


def _spread(values: list[float], fmt: str = "{:.0f}") -> str:
    values = sorted(values)
    mid = statistics.median(values)
    if len(values) == 1:
        return fmt.format(mid)
    return f"{fmt.format(mid)} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def table(env: dict[str, str], flows: int, rounds: int, rows: list[str]) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits every row alike
        for name in rows:
            results[name].append(_run_bench(env, name, "table", flows=flows))
    print(
        f"\n{flows:,} flows a run, {rounds} rounds, each row in a fresh process; "
        "medians (ranges); ratios per round against the row named"
    )
    print(
        f"{'configuration':46} {'calling µs':>16} {'process CPU µs':>18} {'÷ base':>18} "
        f"{'wall µs':>16} {'dropped':>8}"
    )
    for name, label, base in TABLE_ROWS:
        if name not in rows:
            continue
        runs = results[name]
        ratios = (
            [r["process_us"] / b["process_us"] for r, b in zip(runs, results[base], strict=True)]
            if base in results
            else []
        )
        dropped = max(sum(r["dropped"].values()) for r in runs)
        ratio = _spread(ratios, "{:.2f}") + f"x {base}" if ratios else "-"
        print(
            f"{label:46} {_spread([r['calling_us'] for r in runs]):>16} "
            f"{_spread([r['process_us'] for r in runs]):>18} {ratio:>18} "
            f"{_spread([r['wall_us'] for r in runs]):>16} {dropped:>8}"
        )
    return results


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


def throughput(env: dict[str, str], seconds: float, config: str, threads: int) -> float:
    """Flat out for `seconds`; while anything is dropped or the backlog outlives the run by more
    than 2 s, again at 90% of the rate that got through. Returns the rate sustained."""
    rate = 0.0
    for attempt in range(6):
        r = _run_bench(env, config, "sustain", seconds=seconds, rate=rate, threads=threads)
        dropped = sum(r["dropped"].values())
        label = "flat out" if not rate else f"paced at {rate:,.0f}/s"
        print(
            f"  {config}, {threads} thread(s), run {attempt + 1} ({label}): "
            f"{r['rate']:,.0f} flows/s for {r['elapsed']:.0f} s, {dropped:,} dropped "
            f"{r['dropped']}, backlog flushed in {r['flush_s']:.1f} s, "
            f"{r['process_us']:.0f} µs CPU/flow, peak RSS {r['peak_rss_kb'] / 1024:.0f} MiB"
        )
        if dropped == 0 and r["flush_s"] <= 2.0:
            return float(r["rate"])
        lost = r["dropped"].get("spans", 0) / 4
        rate = 0.9 * min(r["rate"], (r["flows"] - lost) / (r["elapsed"] + r["flush_s"]))
    return 0.0


WAIT_MODES = (("no wait", {"DASHFROG_QUEUE_FULL_WAIT": "off"}), ("backpressure", {}))


def _threads_row(label: str, env: dict[str, str], seconds: float) -> None:
    r = _run_bench(env, "dashfrog", "sustain", seconds=seconds, threads=8)
    dropped = {k: v for k, v in r["dropped"].items() if k != "spans_missing"}
    print(
        f"  {label:30} {r['rate']:6,.0f} flows/s, {r['process_us']:4.0f} µs CPU/flow, "
        f"dropped {sum(dropped.values()):7,} {dropped}, waited {r['waited']:,}, peak queued "
        f"{r['peak_queued']:,}, peak RSS {r['peak_rss_kb'] / 1024:.0f} MiB, "
        f"load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="table,throughput,threads,outage")
    parser.add_argument("--rows", default=",".join(name for name, _, _ in TABLE_ROWS))
    parser.add_argument("--flows", type=int, default=20_000, help="flows a table run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocol", default="grpc", choices=["grpc", "http/protobuf"])
    parser.add_argument("--seconds", type=float, default=30.0, help="of a throughput run")
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--bench", help=argparse.SUPPRESS)
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bench:
        bench_child(args.bench, args.op, args.flows, args.seconds, args.rate, args.threads)
        return
    parts = args.parts.split(",")

    from tests.support import clean_env
    from tests.support.collector import collector_env

    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python "
        f"{sys.version.split()[0]}, rotel collector on loopback, OTLP/{args.protocol}"
    )
    if {"table", "throughput", "threads"} & set(parts):
        with _blackhole_collector() as sink:
            env = clean_env()
            env |= collector_env(sink, args.protocol, fast_export=False)
            env |= {
                "OTEL_SERVICE_NAME": "bench",
                "PYTHONPATH": str(ROOT),
                "DASHFROG_STORE": "off",
                "DASHFROG_CONSOLE": "off",
            }
            if "table" in parts:
                table(env, args.flows, args.rounds, args.rows.split(","))
            if "throughput" in parts:
                print(f"\nthroughput with no drop, {args.seconds:.0f} s runs, default settings:")
                ceiling = throughput(env, args.seconds, "bare", 1)
                ours = throughput(env, args.seconds, "dashfrog", 1)
                print(
                    f"sustained: bare OTel {ceiling:,.0f} flows/s (the ceiling), "
                    f"dashfrog {ours:,.0f} flows/s, 0 dropped"
                )
            if "threads" in parts:
                print(
                    "\n8 threads flat out, default settings; 'no wait' is "
                    "DASHFROG_QUEUE_FULL_WAIT=off (a full queue drops at once, "
                    "as before backpressure)"
                )
                for label, extra in WAIT_MODES:
                    _threads_row(f"collector up, {label}", env | extra, args.seconds / 3)
        if "threads" in parts:
            from tests.support.procs import free_port

            down = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
            down["DASHFROG_SHUTDOWN_TIMEOUT"] = "1"
            print("  (bounds: 100,000 events + 16,384 spans + 16,384 log records)")
            for label, extra in WAIT_MODES:
                _threads_row(f"collector down, {label}", down | extra, args.seconds / 3)
    if "outage" in parts:
        outage(args)


def outage(args: argparse.Namespace) -> None:
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

        print("\noutage: rotel forwarding to a receiver that checks every flow")
        seconds = min(args.seconds, 10.0)
        app = Child(env)
        rate, result, dropped_before = 0.0, {}, 0
        for attempt in range(5):
            receiver.clear()
            result = app.call(op="run", rate=rate, seconds=seconds)
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
            f"{sustained * 4:,.0f} events/s) for {seconds:.0f} s, 0 dropped"
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
    if sys.argv[1:2] == ["--child"]:
        child()
    else:
        main()
