"""Requests per second of a minimal FastAPI endpoint that runs one step, three ways, one run.

    .venv/bin/python benchmarks/http_overhead.py [--seconds 4] [--rounds 5] [--connections 16]

* ``none``: no instrumentation; the handler does its work bare.
* ``otel``: `FastAPIInstrumentor.instrument_app` and one OTel span around the work (the W3C
  tracecontext + baggage propagators, the OTel default).
* ``otel-nosend``: the same, without the ASGI middleware's per-message "http send" spans
  (``exclude_spans=["send", "receive"]``), which `with_fastapi` leaves out by default.
* ``dashfrog``: `with_fastapi(app)` and `with step.start("work")`; each request joins the
  caller's flow from its baggage (the case that matters: service B in a flow), so the server
  span, the step span and its lifecycle event all carry the flow.

Spans and log records go through the SDK's batch processors to no-op exporters, the same for
``otel`` and ``dashfrog``: what is measured is the instrumentation, not a network. Every request
carries the same ``traceparent`` and ``baggage`` headers (a flow with a tenant and two labels).

Each variant is a uvicorn server in its own process, on loopback; the load generator is
``wrk`` when it is on PATH (``apt-get install wrk``), else a keep-alive client with one thread
per connection in this process (which then shares the CPU with the server). Rounds alternate
the variants so that a noisy neighbour hurts all three alike; the figure is the median.
Budget (issue 3): ``dashfrog`` at least 0.9x ``otel``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import free_port  # noqa: E402

VARIANTS = ("none", "otel", "otel-nosend", "dashfrog")
HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "baggage": (
        "dashfrog.flow.id=0af7651916cd43dd8448eb211c80319c,dashfrog.flow.name=order_processing,"
        "dashfrog.tenant=customer-123,dashfrog.label.region=eu,dashfrog.label.plan=pro,"
        "dashfrog.flow.trace_id=4bf92f3577b34da6a3ce929d0e0e4736,"
        "dashfrog.flow.span_id=00f067aa0ba902b7,dashfrog.flow.start_time=1700000000000000000"
    ),
}


# -- the servers ------------------------------------------------------------------------------


def _providers() -> tuple[Any, Any]:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from overhead import QUEUE, NoOpLogExporter, NoOpSpanExporter  # this folder (sys.path[0])

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NoOpSpanExporter(), max_queue_size=QUEUE))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(NoOpLogExporter(), max_queue_size=QUEUE)
    )
    return tracer_provider, logger_provider


def build_app(variant: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    def work() -> dict[str, int]:
        return {"total": sum(range(50))}

    if variant == "none":

        @app.get("/pay")
        async def pay_bare() -> dict[str, int]:
            return work()

    elif variant.startswith("otel"):
        from opentelemetry import trace
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        tracer_provider, _ = _providers()
        trace.set_tracer_provider(tracer_provider)
        tracer = tracer_provider.get_tracer("bench")

        @app.get("/pay")
        async def pay_otel() -> dict[str, int]:
            with tracer.start_as_current_span("work"):
                return work()

        exclude = ["send", "receive"] if variant == "otel-nosend" else None
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, exclude_spans=exclude
        )
    else:
        import dashfrog_sdk
        from dashfrog_sdk import step
        from dashfrog_sdk.integrations import with_fastapi

        tracer_provider, logger_provider = _providers()
        dashfrog_sdk.setup(
            tracer_provider=tracer_provider, logger_provider=logger_provider, store=False
        )

        @app.get("/pay")
        async def pay_dashfrog() -> dict[str, int]:
            with step.start("work"):
                return work()

        with_fastapi(app)
    return app


def serve(variant: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        build_app(variant), host="127.0.0.1", port=port, log_level="error", access_log=False
    )


# -- the load ---------------------------------------------------------------------------------


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/pay", headers=HEADERS)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_wrk(wrk: str, port: int, seconds: float, connections: int) -> tuple[int, float]:
    """(requests answered, seconds) under `wrk` with one thread."""
    args = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    for name, value in HEADERS.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*args, f"http://127.0.0.1:{port}/pay"], capture_output=True, text=True, check=True
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    elapsed = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    return int(match.group(1)), elapsed


def load_python(port: int, seconds: float, connections: int) -> tuple[int, float]:
    """(requests answered, seconds) with one keep-alive connection per thread."""
    done = [0] * connections
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            conn.request("GET", "/pay", headers=HEADERS)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="load per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return

    wrk = shutil.which("wrk")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env |= {"DASHFROG_STORE": "off", "DASHFROG_CONSOLE": "off", "OTEL_METRICS_EXPORTER": "none"}
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "DASHFROG_PROPAGATION_KEY"):
        env.pop(var, None)
    ports = {variant: free_port() for variant in VARIANTS}
    servers = {
        variant: subprocess.Popen(
            [sys.executable, __file__, "--serve", variant, str(port)], env=env
        )
        for variant, port in ports.items()
    }
    rps: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}  # server CPU us/request
    try:
        for variant, port in ports.items():
            _wait_ready(port, servers[variant])
            load_python(port, 0.5, 2)  # warm-up
        loader = "wrk" if wrk else "python threads (sharing this process's CPU)"
        print(
            f"load: {loader}, {args.connections} connections, {args.seconds:g} s x "
            f"{args.rounds} rounds per variant, {os.cpu_count()} CPUs"
        )
        for round_no in range(args.rounds):
            shift = round_no % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            for variant in order:
                port, pid = ports[variant], servers[variant].pid
                before = cpu_seconds(pid)
                if wrk:
                    done, elapsed = load_wrk(wrk, port, args.seconds, args.connections)
                else:
                    done, elapsed = load_python(port, args.seconds, args.connections)
                cpu[variant].append((cpu_seconds(pid) - before) / done * 1e6)
                rps[variant].append(done / elapsed)
            print(
                f"round {round_no + 1}: "
                + ", ".join(f"{v} {rps[v][-1]:,.0f}/s {cpu[v][-1]:.0f} us" for v in VARIANTS)
            )
    finally:
        for proc in servers.values():
            proc.terminate()
        for proc in servers.values():
            proc.wait(10)
    median = {variant: statistics.median(values) for variant, values in rps.items()}
    cost = {variant: statistics.median(values) for variant, values in cpu.items()}
    print()
    for variant in VARIANTS:
        print(
            f"{variant:>11}: {median[variant]:>8,.0f} requests/s, "
            f"{cost[variant]:>6.0f} us server CPU/request (medians)"
        )
    ratio = median["dashfrog"] / median["otel"]
    verdict = "ok" if ratio >= 0.9 else "OVER"
    print(f"\n dashfrog / otel = {ratio:.2f}x requests/s (budget >= 0.90x: {verdict})")
    lean = median["dashfrog"] / median["otel-nosend"]
    print(f" dashfrog / otel-nosend = {lean:.2f}x requests/s (the same spans, plus the flow's)")
    print(f"     otel / none = {median['otel'] / median['none']:.2f}x requests/s")
    print(f" dashfrog / none = {median['dashfrog'] / median['none']:.2f}x requests/s")
    print(f" CPU per request: dashfrog / otel = {cost['dashfrog'] / cost['otel']:.2f}x")
    print(
        f"                  dashfrog / otel-nosend = {cost['dashfrog'] / cost['otel-nosend']:.2f}x"
    )


if __name__ == "__main__":
    main()
