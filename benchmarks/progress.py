"""Cost of `s.progress()` in a 10,000-iteration loop, against the same loop without it.

    .venv/bin/python benchmarks/progress.py [--iterations 10000] [--rounds 15]

One flow with one step runs a loop of `--iterations` rows; the candidate also calls
``s.progress(i + 1, total=n)`` every row (and once more with a message, the slow path).
Measured: whole-process CPU time (``time.process_time``: every thread, so the lifecycle
dispatcher and the export threads too) from before the flow starts to after ``dashfrog_sdk.flush()``
has exported everything to no-op OTel exporters. The baseline is the same flow and loop without
progress(), measured in the same run, interleaved round by round; each figure is the best of
`--rounds` (the machine's load only ever adds time).

Also: the call every 100th row (what a loop far tighter than its progress needs can do).

Two loop bodies: an empty one (the call's own cost, per row) and a small realistic row (split a
CSV line and convert its fields, ~1-2 µs). The ratio that matters is the second: what
progress() adds to a loop that does something.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import dashfrog_sdk
from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, step

LINE = "42,acme-corp,eu,199.90,2024-05-01"
QUEUE = 100_000


class NoOpSpanExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Counting(LogRecordExporter):
    """Counts the progress records that reached the exporter (the throttle at work)."""

    def __init__(self) -> None:
        self.progress = 0

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:  # type: ignore[override]
        self.progress += sum(1 for r in batch if r.log_record.event_name == c.EVENT_STEP_PROGRESS)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def setup() -> Counting:
    spans = TracerProvider()
    spans.add_span_processor(BatchSpanProcessor(NoOpSpanExporter(), max_queue_size=QUEUE))
    logs = LoggerProvider()
    exporter = Counting()
    logs.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=QUEUE))
    dashfrog_sdk.setup(
        tracer_provider=spans,
        logger_provider=logs,
        console=False,
        store=False,
        capture_logging=False,
        flow_metrics=False,
    )
    return exporter


def empty(_: int) -> None:
    return None


def parse_row(i: int) -> None:
    fields = LINE.split(",")
    int(fields[0]) + i
    float(fields[3])


def loop(body: Callable[[int], None], n: int, progress: str) -> float:
    """Whole-process CPU seconds of one flow running the loop, export included."""
    gc.collect()
    t0 = time.process_time()
    with flow.start("import", tenant="acme"), step.start("import_rows") as s:
        if progress == "none":
            for i in range(n):
                body(i)
        elif progress == "fast":
            for i in range(n):
                body(i)
                s.progress(i + 1, total=n)
        elif progress == "every100":
            for i in range(n):
                body(i)
                if i % 100 == 99:
                    s.progress(i + 1, total=n)
        else:  # a message: the checked path
            for i in range(n):
                body(i)
                s.progress(i + 1, total=n, message="rows")
    dashfrog_sdk.flush()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    n = args.iterations
    exporter = setup()
    print(f"s.progress() in a {n:,}-iteration loop; whole-process CPU incl. export, best of")
    print(f"{args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    print()
    print(f"{'loop body':<22} {'progress()':<22} {'ms / loop':>10} {'ns / row':>9} {'ratio':>7}")
    for label, body in (("empty", empty), ("parse a CSV row", parse_row)):
        times: dict[str, list[float]] = {"none": [], "fast": [], "message": [], "every100": []}
        for mode in times:  # warm-up
            loop(body, n, mode)
        before = exporter.progress
        for _ in range(args.rounds):
            for mode in times:
                times[mode].append(loop(body, n, mode))
        sent = (exporter.progress - before) / (3 * args.rounds)
        base = min(times["none"])
        for mode, name in (
            ("none", "none (baseline)"),
            ("fast", "every row"),
            ("message", "every row, a message"),
            ("every100", "every 100th row"),
        ):
            best = min(times[mode])
            extra = (best - base) / n * 1e9
            print(
                f"{label:<22} {name:<22} {best * 1e3:>10.2f} "
                f"{(extra if mode != 'none' else best / n * 1e9):>9.0f} {best / base:>6.2f}x"
            )
        print(f"{'':<22} progress records exported per loop: {sent:.1f}")
    dashfrog_sdk.shutdown()


if __name__ == "__main__":
    main()
