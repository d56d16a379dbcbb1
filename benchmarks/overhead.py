"""Cost of a dashfrog flow vs bare OpenTelemetry spans, measured in one run on one machine.

    .venv/bin/python benchmarks/overhead.py [--flows 20000] [--rounds 7]

Baseline: four nested bare OTel SDK spans (one parent, three children) through a
BatchSpanProcessor with a no-op exporter. Candidate: a flow with a tenant and two labels and
three steps, through the same processor (plus a BatchLogRecordProcessor with a no-op exporter
for its lifecycle events). Two figures per candidate, best of N rounds:

* calling-thread CPU time per flow (``time.thread_time``): the cost on the hot path, which is
  what the budget in ARCHITECTURE.md ("Hot path") is about (at most 1.5x, target 1.25x);
* wall time per flow including the final flush: the total cost, background threads included.

Two more rows split the dashfrog figure, running flows in chunks of 2000 with the lifecycle-event
dispatcher paused: "hot path alone" is the calling thread's own cost, without the dispatcher
thread competing for the GIL; "events, off-thread" is what the dispatcher then spends per flow to
turn the queued records into OTel log records and flow metrics (measured by draining the queue on
this thread) - work the calling thread does not wait for, but the process pays.

If `logfire` is installed (the `bench` extra), the same shape with four Logfire spans is
measured too, in a child process with its own bare-OTel baseline: importing logfire loads a
large module graph that makes every garbage collection in its process slower, which would tax
the other candidates.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class NoOpSpanExporter(SpanExporter):
    """Accepts and counts: `exported` against what was produced shows nothing was dropped."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


class NoOpLogExporter(LogRecordExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, batch: Sequence[object]) -> LogRecordExportResult:  # type: ignore[override]
        self.exported += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_checks: list[Callable[[], int]] = []  # each: items dropped so far (0 when all arrived)
ran: dict[str, int] = {}  # flows run per candidate, warm-up included


def dropped() -> int:
    return sum(check() for check in _checks)


def measure(
    run_one: Callable[[], None], flush: Callable[[], None], flows: int
) -> tuple[float, float]:
    """(calling-thread CPU µs per flow, wall µs per flow including flush)."""
    gc.collect()
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for _ in range(flows):
        run_one()
    cpu1 = time.thread_time()
    flush()
    wall1 = time.perf_counter()
    return (cpu1 - cpu0) / flows * 1e6, (wall1 - wall0) / flows * 1e6


def measure_paused(run_one: Callable[[], None], flows: int) -> tuple[float, float]:
    """(calling-thread CPU µs per flow with the dispatcher paused, its drain CPU µs per flow)."""
    from dashfrog_sdk.lifecycle import bus as events

    hot = drain = 0.0
    done = 0
    gc.collect()
    while done < flows:
        n = min(2000, flows - done)
        events.stop()
        t0 = time.thread_time()
        for _ in range(n):
            run_one()
        t1 = time.thread_time()
        events.flush()
        t2 = time.thread_time()
        events.start()
        hot, drain, done = hot + t1 - t0, drain + t2 - t1, done + n
    return hot / flows * 1e6, drain / flows * 1e6


# Queues that hold a whole round: the SDK's default (2048) overflows when a flat-out loop
# outruns the export thread, and what is dropped would not be measured. `dropped()` checks.
QUEUE = 4 * 200_000


class Produced:
    """Counts what reaches the log processors, to check the no-op exporter got all of it."""

    def __init__(self) -> None:
        self.records = 0

    def on_emit(self, log_record: object) -> None:
        self.records += 1

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def bare_otel() -> tuple[Callable[[], None], Callable[[], None]]:
    provider = TracerProvider()
    exporter = NoOpSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=QUEUE))
    tracer = provider.get_tracer("bench")
    _checks.append(lambda: ran["bare OTel (4 spans)"] * 4 - exporter.exported)

    def run_one() -> None:
        with tracer.start_as_current_span("flow"):
            for name in ("validate", "charge", "ship"):
                with tracer.start_as_current_span(name):
                    pass

    return run_one, lambda: provider.force_flush()


def dashfrog() -> tuple[Callable[[], None], Callable[[], None]]:
    import dashfrog_sdk
    from dashfrog_sdk import diagnostics, flow, step

    provider = TracerProvider()
    spans = NoOpSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(spans, max_queue_size=QUEUE))
    logs = LoggerProvider()
    records, produced = NoOpLogExporter(), Produced()
    logs.add_log_record_processor(produced)  # type: ignore[arg-type]
    logs.add_log_record_processor(BatchLogRecordProcessor(records, max_queue_size=QUEUE))
    _checks.append(lambda: ran["dashfrog flow (3 steps)"] * 4 - spans.exported)
    _checks.append(lambda: produced.records - records.exported)
    _checks.append(lambda: diagnostics.counts().get("events.dropped", 0))
    dashfrog_sdk.setup(
        tracer_provider=provider,
        logger_provider=logs,
        console=False,
        store=False,
        capture_logging=False,
    )

    def run_one() -> None:
        with flow.start("order", tenant="customer-123", region="eu", plan="pro"):
            for name in ("validate", "charge", "ship"):
                with step.start(name):
                    pass

    def flush() -> None:
        dashfrog_sdk.flush()

    return run_one, flush


def open_memory(n: int = 2000) -> tuple[float, float]:
    """(bytes per open bare span, bytes per open flow), measured with tracemalloc.

    Each span or flow is entered in its own context (as concurrent requests would be) and left
    open; the harness's own cost (an ExitStack and a context per item) is measured alone and
    subtracted. The flow's queued lifecycle fields are delivered first (as the dispatcher does
    within 100 ms), so this is what a flow costs while it stays open.
    """
    import contextlib
    import contextvars
    import tracemalloc

    from dashfrog_sdk import flow
    from dashfrog_sdk.lifecycle import bus

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoOpSpanExporter(), max_queue_size=QUEUE))
    tracer = provider.get_tracer("bench")

    def nothing(stack: contextlib.ExitStack) -> None:
        return None

    def bare(stack: contextlib.ExitStack) -> None:
        stack.enter_context(tracer.start_as_current_span("flow"))

    def dashfrog_flow(stack: contextlib.ExitStack) -> None:
        stack.enter_context(flow.start("order", tenant="customer-123", region="eu", plan="pro"))

    def per_item(open_one: Callable[[contextlib.ExitStack], None]) -> float:
        gc.collect()
        bus.flush()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        held = []
        for _ in range(n):
            stack, ctx = contextlib.ExitStack(), contextvars.copy_context()
            ctx.run(open_one, stack)
            held.append((stack, ctx))
        bus.flush()
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        for stack, ctx in held:
            ctx.run(stack.close)
        bus.flush()
        provider.force_flush()
        return sum(d.size_diff for d in after.compare_to(before, "filename")) / n

    results: dict[str, list[float]] = {"none": [], "bare": [], "flow": []}
    for _ in range(3):
        for name, fn in (("none", nothing), ("bare", bare), ("flow", dashfrog_flow)):
            results[name].append(per_item(fn))
    harness = min(results["none"])
    return min(results["bare"]) - harness, min(results["flow"]) - harness


def step_scaling(total_steps: int = 6000) -> list[tuple[str, float]]:
    """Calling-thread µs per step for flows of 1 to 1,000 sequential steps and for steps
    nested 1 to 50 deep: a step's cost must not grow with its flow (best of 3)."""
    from dashfrog_sdk import flow, step
    from dashfrog_sdk.lifecycle import bus

    def sequential(n: int) -> None:
        with flow.start("order", tenant="customer-123", region="eu"):
            for _ in range(n):
                with step.start("s"):
                    pass

    def nested(depth: int) -> None:
        with flow.start("order", tenant="customer-123", region="eu"):
            scopes = [step.start("s") for _ in range(depth)]
            for scope in scopes:
                scope.__enter__()
            for scope in reversed(scopes):
                scope.__exit__(None, None, None)

    out = []
    for label, run, sizes in (
        ("steps in a flow", sequential, (1, 10, 100, 1000)),
        ("nesting depth", nested, (1, 10, 50)),
    ):
        for size in sizes:
            flows = max(1, total_steps // size)
            best = float("inf")
            for _ in range(3):
                gc.collect()
                t0 = time.thread_time()
                for _ in range(flows):
                    run(size)
                best = min(best, (time.thread_time() - t0) / (flows * size) * 1e6)
                bus.flush()
            out.append((f"{label}: {size}", best))
    return out


def logfire_spans() -> tuple[Callable[[], None], Callable[[], None]] | None:
    try:
        import logfire
    except ImportError:
        return None
    logfire.configure(
        send_to_logfire=False,
        console=False,
        additional_span_processors=[BatchSpanProcessor(NoOpSpanExporter())],
    )

    def run_one() -> None:
        with logfire.span("order", tenant="customer-123", region="eu", plan="pro"):
            for name in ("validate", "charge", "ship"):
                with logfire.span(name):
                    pass

    return run_one, lambda: logfire.force_flush()


def logfire_child(flows: int, rounds: int) -> None:
    """Print "cpu_ratio wall_ratio" of Logfire against bare OTel, both measured here."""
    lf = logfire_spans()
    if lf is None:
        return
    candidates = [bare_otel(), lf]
    best = [(float("inf"), float("inf"))] * 2
    for run_one, flush in candidates:
        measure(run_one, flush, min(2000, flows))
    for _ in range(rounds):
        for i, (run_one, flush) in enumerate(candidates):
            cpu, wall = measure(run_one, flush, flows)
            best[i] = (min(best[i][0], cpu), min(best[i][1], wall))
    print(best[1][0], best[1][0] / best[0][0], best[1][1], best[1][1] / best[0][1])


def logfire_row(flows: int, rounds: int) -> None:
    try:
        import logfire  # noqa: F401
    except ImportError:
        print("logfire (4 spans)          not installed (pip install -e '.[bench]')")
        return
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--logfire-only",
            "--flows",
            str(flows),
            "--rounds",
            str(rounds),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    cpu, cpu_ratio, wall, wall_ratio = (float(x) for x in out[-4:])
    print(
        f"{'logfire (4 spans) [*]':26} {cpu:12.1f} {cpu_ratio:6.2f}x {wall:13.1f} {wall_ratio:6.2f}x"
    )
    print("  [*] in its own process, ratios against a bare-OTel baseline measured there")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--logfire-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.logfire_only:
        logfire_child(args.flows, args.rounds)
        return

    df_run, df_flush = dashfrog()
    candidates = {
        "bare OTel (4 spans)": bare_otel(),
        "dashfrog flow (3 steps)": (df_run, df_flush),
    }
    best: dict[str, tuple[float, float]] = {}
    for name, (run_one, flush) in candidates.items():  # warm up
        measure(run_one, flush, min(2000, args.flows))
        ran[name] = min(2000, args.flows)
    for _ in range(args.rounds):  # interleave rounds so drift hits everyone alike
        for name, (run_one, flush) in candidates.items():
            cpu, wall = measure(run_one, flush, args.flows)
            ran[name] += args.flows
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], cpu), min(old[1], wall))
        hot, drain = measure_paused(df_run, args.flows)
        ran["dashfrog flow (3 steps)"] += args.flows
        old = best.get("paused", (float("inf"), float("inf")))
        best["paused"] = (min(old[0], hot), min(old[1], drain))
    base_cpu, base_wall = best["bare OTel (4 spans)"]
    hot, drain = best.pop("paused")
    print(f"{'':26} {'CPU µs/flow':>12} {'ratio':>7} {'wall µs/flow':>13} {'ratio':>7}")
    for name, (cpu, wall) in best.items():
        print(f"{name:26} {cpu:12.1f} {cpu / base_cpu:6.2f}x {wall:13.1f} {wall / base_wall:6.2f}x")
        if name.startswith("dashfrog"):
            print(f"{'  hot path alone':26} {hot:12.1f} {hot / base_cpu:6.2f}x")
            print(f"{'  events, off-thread':26} {drain:12.1f} {drain / base_cpu:6.2f}x")
    logfire_row(args.flows, args.rounds)
    for label, ratio in (
        ("with dispatcher", best["dashfrog flow (3 steps)"][0] / base_cpu),
        ("hot path", hot / base_cpu),
    ):
        verdict = "within" if ratio <= 1.5 else "OVER"
        print(f"dashfrog {label}: {ratio:.2f}x calling-thread CPU, {verdict} the 1.5x budget")
    for _, flush in candidates.values():  # what the last rounds left in the queues
        flush()
    lost = dropped()
    print(f"dropped: {lost} spans, log records or events (every one produced was exported)")
    if lost:
        raise SystemExit("some of what was measured was dropped: the figures are not valid")
    print("calling-thread µs per step (the flow's own cost included, so 1 step is dearer):")
    for label, us in step_scaling():
        print(f"  {label:24} {us:8.1f}")
    span_bytes, flow_bytes = open_memory()
    print(
        f"memory while open: bare span {span_bytes / 1024:.1f} KB, dashfrog flow "
        f"{flow_bytes / 1024:.1f} KB ({flow_bytes / span_bytes:.2f}x)"
    )


if __name__ == "__main__":
    main()
