"""The configurations of the production table, each run in its own process (see export.py).

A process runs one configuration: what it costs the calling thread, the whole process (every
thread: the calling one, the SDK's batch and export threads, gRPC's own) and the wall clock,
per flow and including the final flush, and what was dropped on the way.

A flow is one flow span and three step spans (4 spans). Configurations:

* ``bare``: four bare OTel SDK spans, the SDK's BatchSpanProcessor and OTLP exporter;
* ``bare+attrs``: the same, with the attributes dashfrog puts on each span, set through the
  public API (``set_attributes``): what exporting dashfrog's data costs with the stock encoder;
* ``bare+attrs+logs``: the same plus four log records (BatchLogRecordProcessor, OTLP), one per
  lifecycle event dashfrog would announce;
* ``dashfrog``: ``setup()`` with the defaults and an OTLP endpoint: traces, logs and metrics;
* ``bare-noop`` / ``dashfrog-noop``: the same shapes through no-op exporters (the calling-thread
  figures of overhead.py), and ``dashfrog-embedded``: the embedded default (SQLite store and
  console, output thrown away), against ``bare-noop``.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

LABELS = {"region": "eu", "plan": "pro"}
STEPS = ("validate", "charge", "ship")
# Flows per chunk: each chunk is produced flat out, then flushed, so no queue (the OTel SDK's
# default 2048 spans, dashfrog's 16384 items) ever overflows: nothing measured is dropped.
CHUNK = 400


class Counting:
    """Wraps an exporter; counts the items it accepted (the SDK's batch processors drop
    silently, so "exported == produced" is how a bare row proves it dropped nothing)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exported = 0

    def export(self, batch: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        result = self.inner.export(batch, *args, **kwargs)
        if getattr(result, "name", "") == "SUCCESS":
            self.exported += len(batch)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _noop_span_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class NoOp(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return NoOp()


def _otlp_span_exporter() -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"], insecure=True)


def _otlp_log_exporter() -> Any:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"], insecure=True)


Built = tuple[Callable[[int], None], Callable[[], None], Callable[[int], dict[str, int]]]


def bare(attrs: bool = False, logs: bool = False, noop: bool = False) -> Built:
    """(run_one(i), flush(), dropped(flows)) for bare OTel."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "bench")})
    spans = Counting(_noop_span_exporter() if noop else _otlp_span_exporter())
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(spans))  # the SDK's defaults
    tracer = provider.get_tracer("bench")
    emit: Callable[..., None] | None = None
    records = None
    log_provider = None
    if logs:
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        records = Counting(_otlp_log_exporter())
        log_provider = LoggerProvider(resource=resource)
        log_provider.add_log_record_processor(BatchLogRecordProcessor(records))
        logger = log_provider.get_logger("bench")

        def emit(name: str, attributes: dict[str, Any]) -> None:
            logger.emit(
                LogRecord(
                    timestamp=time.time_ns(),
                    severity_number=SeverityNumber.INFO,
                    severity_text="INFO",
                    body=f"{name} started",
                    attributes=attributes,
                    event_name=name,
                )
            )

    def run_one(i: int) -> None:
        if not attrs:
            with tracer.start_as_current_span("flow"):
                for name in STEPS:
                    with tracer.start_as_current_span(name):
                        pass
            return
        shared = {
            "dashfrog.flow.id": f"{i:032x}",
            "dashfrog.flow.name": "order",
            "dashfrog.tenant": "customer-123",
            **{f"dashfrog.label.{k}": v for k, v in LABELS.items()},
        }
        with tracer.start_as_current_span("flow order", attributes=shared) as flow_span:
            if emit is not None:
                emit("dashfrog.flow.start", shared)
            for name in STEPS:
                step_attrs = {**shared, "dashfrog.step.name": name}
                with tracer.start_as_current_span(f"step {name}", attributes=step_attrs) as s:
                    if emit is not None:
                        emit("dashfrog.step.start", step_attrs)
                    s.set_attribute("dashfrog.step.status", "completed")
            flow_span.set_attribute("dashfrog.flow.status", "completed")

    def flush() -> None:
        provider.force_flush()
        if log_provider is not None:
            log_provider.force_flush()

    def dropped(flows: int) -> dict[str, int]:
        out = {"spans": flows * 4 - spans.exported}
        if records is not None:
            out["logs"] = flows * 4 - records.exported
        return out

    return run_one, flush, dropped


def dashfrog(embedded: bool = False, noop: bool = False) -> Built:
    import dashfrog_sdk
    from dashfrog_sdk import flow, step
    from dashfrog_sdk.exporting import stats

    if noop:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        sys.path.insert(0, os.path.dirname(__file__))
        from overhead import NoOpLogExporter, NoOpSpanExporter

        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(NoOpSpanExporter(), max_queue_size=CHUNK * 8)
        )
        log_provider = LoggerProvider()
        log_provider.add_log_record_processor(
            BatchLogRecordProcessor(NoOpLogExporter(), max_queue_size=CHUNK * 8)
        )
        dashfrog_sdk.setup(
            tracer_provider=provider,
            logger_provider=log_provider,
            console=False,
            store=False,
            capture_logging=False,
        )
    elif embedded:
        dashfrog_sdk.setup(store=os.path.join(tempfile.mkdtemp(), "flows.db"), console=True)
    else:
        dashfrog_sdk.setup()

    def run_one(i: int) -> None:
        with flow.start("order", tenant="customer-123", **LABELS):
            for name in STEPS:
                with step.start(name):
                    pass

    def dropped(flows: int) -> dict[str, int]:
        s = stats()
        out = {"events": s["diagnostics"].get("events.dropped", 0)}
        if not noop and not embedded:
            out |= {"spans": s["traces"]["dropped"], "logs": s["logs"]["dropped"]}
            out["spans_missing"] = flows * 4 - s["traces"]["exported"]
        return out

    return run_one, lambda: dashfrog_sdk.flush(60), dropped


CONFIGS: dict[str, Callable[[], Built]] = {
    "bare": bare,
    "bare+attrs": lambda: bare(attrs=True),
    "bare+attrs+logs": lambda: bare(attrs=True, logs=True),
    "dashfrog": dashfrog,
    "bare-noop": lambda: bare(noop=True),
    "dashfrog-noop": lambda: dashfrog(noop=True),
    "dashfrog-embedded": lambda: dashfrog(embedded=True),
}


def measure(config: str, flows: int) -> dict[str, Any]:
    """Run `flows` flows (after a warm-up) in chunks, each flushed; the costs per flow."""
    run_one, flush, dropped = CONFIGS[config]()
    for i in range(CHUNK):  # warm-up: imports, connections, caches
        run_one(i)
    flush()
    before = dropped(CHUNK)
    gc.collect()
    calling = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = 0
    while done < flows:
        n = min(CHUNK, flows - done)
        t0 = time.thread_time()
        for i in range(done, done + n):
            run_one(i)
        calling += time.thread_time() - t0
        flush()
        done += n
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    after = dropped(flows + CHUNK)
    lost = {k: v - before.get(k, 0) for k, v in after.items()}
    return {
        "calling_us": calling / flows * 1e6,
        "process_us": cpu / flows * 1e6,
        "wall_us": wall / flows * 1e6,
        "dropped": lost,
        "threads": threading.active_count(),
    }


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _queued() -> int:
    """Items waiting anywhere in dashfrog (lifecycle events and both export queues)."""
    from dashfrog_sdk.exporting import stats
    from dashfrog_sdk.lifecycle import records

    s = stats()
    waiting = len(records.pending.fields) // records.WIDTH
    return waiting + s["traces"]["queued"] + s["logs"]["queued"]


def sustain(config: str, seconds: float, rate: float, threads: int) -> dict[str, Any]:
    """`threads` threads produce flows flat out (rate 0) or at `rate` flows/s in total for
    `seconds`, then everything is flushed; what was produced, dropped, and the memory peak."""
    run_one, flush, dropped = CONFIGS[config]()
    for i in range(CHUNK):
        run_one(i)
    flush()
    before = dropped(CHUNK)
    stop = threading.Event()
    counts = [0] * threads
    peak = {"rss_kb": _rss_kb(), "queued": 0}
    tracked = config.startswith("dashfrog")

    def produce(k: int) -> None:
        period = threads / rate if rate else 0.0
        next_at = time.perf_counter()
        i = k * 10_000_000
        while not stop.is_set():
            run_one(i)
            i += 1
            counts[k] += 1
            if period:
                next_at += period
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

    def sample() -> None:
        while not stop.is_set():
            peak["rss_kb"] = max(peak["rss_kb"], _rss_kb())
            if tracked:
                peak["queued"] = max(peak["queued"], _queued())
            stop.wait(0.1)

    workers = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    sampler = threading.Thread(target=sample)
    cpu0, t0 = time.process_time(), time.perf_counter()
    sampler.start()
    for w in workers:
        w.start()
    stop.wait(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    flushed_at = time.perf_counter()
    flush()
    flush_s = time.perf_counter() - flushed_at
    sampler.join()
    flows = sum(counts)
    after = dropped(flows + CHUNK)
    waited = 0
    if tracked:
        from dashfrog_sdk.exporting import stats

        s = stats()
        waited = s["traces"]["waited"] + s["logs"]["waited"]
        waited += s["diagnostics"].get("events.waited", 0)
    return {
        "flows": flows,
        "elapsed": elapsed,
        "rate": flows / elapsed,
        "flush_s": flush_s,
        "process_us": (time.process_time() - cpu0) / flows * 1e6,
        "dropped": {k: v - before.get(k, 0) for k, v in after.items()},
        "peak_rss_kb": peak["rss_kb"],
        "peak_queued": peak["queued"],
        "waited": waited,  # items that waited for room in a full queue (backpressure)
    }
