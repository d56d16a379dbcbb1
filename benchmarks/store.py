"""Benchmark of the local flow store: 100,000 flows, then the queries the CLI and API run.

    .venv/bin/python benchmarks/store.py [--flows 100000] [--otel-flows 2000] [--path FILE]
    .venv/bin/python benchmarks/store.py --chdb [--sizes 100000,1000000]   # + ClickHouse (chDB)

1. Writes ``--flows`` flows (3 steps and 2 labels each; 500 tenants; 85 % completed, 10 % failed,
   5 % still running) straight through the store writer, in batches as the exporters do.
2. Pushes ``--otel-flows`` more flows through the real OpenTelemetry pipeline (TracerProvider and
   LoggerProvider with ``build_processors``: spans and start events, batch processors, exporter)
   to measure end-to-end ingest.
3. Times the queries (cold first run, then the median of 5): the target is a tenant + status
   query over 100,000 flows well under one second. Exits with status 1 if it is not.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashfrog_sdk import conventions as c
from dashfrog_sdk.store import FlowStore, StoreWriter, build_processors
from dashfrog_sdk.store.convert import Batch, FlowRow, StepRow

TENANTS = 500
BATCH_FLOWS = 128  # ~512 records per batch, as MAX_EXPORT_BATCH


def _flow_batch(rng: random.Random, start_index: int, count: int, now: int) -> Batch:
    batch = Batch()
    for i in range(start_index, start_index + count):
        flow_id = f"{rng.getrandbits(128):032x}"
        start = now - rng.randrange(0, 3 * 86400 * 10**9)
        roll = rng.random()
        status = c.COMPLETED if roll < 0.85 else c.FAILED if roll < 0.95 else c.RUNNING
        labels = {"region": rng.choice(("eu", "us", "apac")), "plan": rng.choice(("free", "pro"))}
        t = start
        for n, name in enumerate(("validate", "charge", "ship")):
            took = rng.randrange(1, 200) * 10**6
            last = n == 2
            step_status = c.RUNNING if status == c.RUNNING and last else c.COMPLETED
            if status == c.FAILED and last:
                step_status = c.FAILED
            batch.steps.append(
                StepRow(
                    span_id=f"{rng.getrandbits(64):016x}",
                    flow_id=flow_id,
                    name=name,
                    status=step_status,
                    service="api" if n < 2 else "worker",
                    start_ns=t,
                    end_ns=None if step_status == c.RUNNING else t + took,
                    error_type="ValueError" if step_status == c.FAILED else None,
                )
            )
            t += took
        batch.flows.append(
            FlowRow(
                flow_id=flow_id,
                name=rng.choice(("order_processing", "data_import", "webhook")),
                tenant=f"tenant-{i % TENANTS}",
                status=status,
                start_ns=start,
                end_ns=None if status == c.RUNNING else t,
                service="api",
                labels=labels,
                error_type="ValueError" if status == c.FAILED else None,
            )
        )
    return batch


def write_direct(path: str, flows: int) -> float:
    writer = StoreWriter(path)
    rng = random.Random(42)
    now = time.time_ns()
    began = time.perf_counter()
    for first in range(0, flows, BATCH_FLOWS):
        assert writer.write(_flow_batch(rng, first, min(BATCH_FLOWS, flows - first), now))
    writer.close()
    return time.perf_counter() - began


def write_otel(path: str, flows: int) -> float:
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import set_span_in_context

    resource = Resource.create({"service.name": "bench"})
    span_processor, log_processor = build_processors(path, max_age_s=None, max_flows=None)
    tp = TracerProvider(resource=resource, shutdown_on_exit=False)
    tp.add_span_processor(span_processor)
    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    lp.add_log_record_processor(log_processor)
    tracer, logger = tp.get_tracer(c.SCOPE_NAME), lp.get_logger(c.SCOPE_NAME)
    began = time.perf_counter()
    for i in range(flows):
        attrs: dict[str, Any] = {
            c.FLOW_ID: f"{random.getrandbits(128):032x}",
            c.FLOW_NAME: "otel_flow",
            c.TENANT: f"tenant-{i % TENANTS}",
            c.label_key("region"): "eu",
        }
        with tracer.start_as_current_span("flow otel_flow", attributes=attrs) as span:
            logger.emit(
                LogRecord(
                    event_name=c.EVENT_FLOW_START,
                    attributes=attrs,
                    context=set_span_in_context(span),
                )
            )
            for name in ("a", "b", "c"):
                step_attrs = {**attrs, c.STEP_NAME: name}
                with tracer.start_as_current_span("step " + name, attributes=step_attrs) as st:
                    logger.emit(
                        LogRecord(
                            event_name=c.EVENT_STEP_START,
                            attributes=step_attrs,
                            context=set_span_in_context(st),
                        )
                    )
                    st.set_attribute(c.STEP_STATUS, c.COMPLETED)
            span.set_attribute(c.FLOW_STATUS, c.COMPLETED)
    tp.force_flush(120_000)
    lp.force_flush(120_000)
    elapsed = time.perf_counter() - began
    tp.shutdown()
    lp.shutdown()
    return elapsed


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    began = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - began
    runs = []
    for _ in range(5):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return cold, statistics.median(runs), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--otel-flows", type=int, default=2_000)
    parser.add_argument("--path", help="store file (default: a temporary file, removed after)")
    parser.add_argument(
        "--chdb",
        action="store_true",
        help="SQLite and ClickHouse (chDB) side by side at --sizes (benchmarks/store_backends.py)",
    )
    parser.add_argument("--sizes", default="100000,1000000", help="with --chdb: flow counts")
    parser.add_argument("--sqlite-up-to", help="with --chdb: skip SQLite above this many flows")
    args = parser.parse_args()
    if args.chdb:
        import store_backends

        extra = ["--sqlite-up-to", args.sqlite_up_to] if args.sqlite_up_to else []
        return store_backends.main(["--sizes", args.sizes, *extra])
    tmp = None
    if args.path:
        path = args.path
    else:
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, "flows.db")
    try:
        took = write_direct(path, args.flows)
        print(
            f"write   {args.flows:>7} flows (+{3 * args.flows} steps) through the writer: "
            f"{took:6.2f} s  ({args.flows / took:,.0f} flows/s)"
        )
        if args.otel_flows:
            took = write_otel(path, args.otel_flows)
            records = args.otel_flows * 8  # 4 spans + 4 start events per flow
            print(
                f"ingest  {args.otel_flows:>7} flows through the OTel pipeline:        "
                f"{took:6.2f} s  ({records / took:,.0f} spans+events/s)"
            )
        size = os.path.getsize(path) / 1e6
        print(f"store   {size:.1f} MB\n")
        with FlowStore(path) as store:
            total = store.count()
            some = store.flows(tenant="tenant-42", limit=1)[0].id
            queries: list[tuple[str, Callable[[], Any]]] = [
                (
                    "flows(tenant, status=failed)",
                    lambda: store.flows(tenant="tenant-42", status="failed"),
                ),
                (
                    "flows(tenant, status=failed, limit=None)",
                    lambda: store.flows(tenant="tenant-42", status="failed", limit=None),
                ),
                (
                    "flows(tenant, status=running)",
                    lambda: store.flows(tenant="tenant-42", status="running"),
                ),
                ("flows(status=failed, limit=50)", lambda: store.flows(status="failed", limit=50)),
                (
                    "flows(tenant, labels={region: eu})",
                    lambda: store.flows(tenant="tenant-42", labels={"region": "eu"}),
                ),
                (
                    "flows(labels={region: eu, plan: pro})",
                    lambda: store.flows(labels={"region": "eu", "plan": "pro"}),
                ),
                (
                    "flows(running_longer_than=1h)",
                    lambda: store.flows(running_longer_than=3600, limit=100),
                ),
                (
                    "flows(name, since=1h)",
                    lambda: store.flows(name="webhook", since=timedelta(hours=1)),
                ),
                ("flow(id)", lambda: store.flow(some)),
                ("stats(since=1d)", lambda: store.stats(since=timedelta(days=1))),
            ]
            print(f"queries over {total:,} flows          cold      median of 5   rows")
            worst = 0.0
            for label, fn in queries:
                cold, median, result = timed(fn)
                rows = len(result) if isinstance(result, list) else 1
                print(f"  {label:<40} {cold * 1000:8.1f} ms  {median * 1000:8.1f} ms  {rows:>6}")
                if label.startswith("flows(tenant, status"):
                    worst = max(worst, cold, median)
        verdict = "OK" if worst < 1.0 else "TOO SLOW"
        print(
            f"\ntenant+status over {total:,} flows: worst {worst * 1000:.1f} ms "
            f"(budget 1000 ms): {verdict}"
        )
        return 0 if worst < 1.0 else 1
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
