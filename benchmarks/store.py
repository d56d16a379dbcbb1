"""Benchmark of the local flow store: ingest, the embedded default's whole-process cost, queries,
retention and CLI start-up, each against a baseline measured in the same run.

    .venv/bin/python benchmarks/store.py [--flows 1000000] [--otel-flows 2000]
        [--process-flows 20000] [--rate 5000] [--path FILE]
    .venv/bin/python benchmarks/store.py --chdb [--sizes 100000,1000000] [--data-dir DIR]  # + chDB
    .venv/bin/python benchmarks/store.py --cache DIR [--flows 1000000] [--baseline-flows 100000]

``--cache DIR``: only the queries (below, with the label filters at 0.1-33 % selectivity and
the stats windows), on stores of ``--baseline-flows`` and ``--flows`` flows written in bulk
(`bulk_fill`: the real schema, the rows of 1. plus a ``cohort`` label) once and kept in DIR,
keyed by size, dataset and schema version: each figure next to its target and the baseline to
``--flows`` ratio, then the CLI start-up. Exit status 1 when a target is missed.

1. Writes ``--flows`` flows (3 steps and 2 labels each; 500 tenants; 85 % completed, 10 % failed,
   5 % still running) straight through the store writer, in batches as the exporters do.
2. Pushes ``--otel-flows`` more flows through the real OpenTelemetry pipeline (TracerProvider and
   LoggerProvider with ``build_processors``: spans and start events, batch processors, exporter)
   to measure end-to-end ingest.
3. Embedded default, whole process (fresh interpreters, ``getrusage`` user + system CPU of the
   whole process, every thread, until the final flush returned): ``--process-flows`` flows of
   3 steps, a tenant and two labels, as fast as a loop makes them, with ``setup()``'s defaults
   (SQLite store + console, output to /dev/null), against bare OTel (4 spans, BatchSpanProcessor,
   a no-op exporter). Then the same flows paced at ``--rate`` flows/s. Each run checks that the
   store holds every flow, ended, with its steps, and reports dashfrog's drop counters.
4. Times the queries (cold first run, then the median of 5): a tenant + status query must stay
   well under one second (exit status 1 if not); goals: a label filter under 50 ms and
   ``stats(since=1d)`` under 200 ms at 1M flows.
5. Retention of the oversized store down to a tenth: the longest single transaction (what
   another writer may wait for; its busy timeout is 10 s) and the file size before and after.
6. CLI start-up: ``dashfrog --version``, ``--help``, ``flows`` and ``stats`` on a 50-flow store,
   and ``stats --since 1d`` on the big one (median of 7 runs to exit, wall and CPU) against
   ``python -c pass`` and ``python -c 'import click'``.

``--only process`` runs section 3 alone, ``--only cli`` section 6 alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
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


# -- a big store, fast, cached --------------------------------------------------------------------

# Bump when the bulk rows change: cached stores are keyed by it and the schema version.
DATASET = 2
# Benchmark-only label of the bulk stores, for label filters of every selectivity: a flow is in
# at most one cohort; each holds this share of the flows (1,000 to 100,000 flows at 1M).
COHORTS = (("c01", 0.001), ("c05", 0.005), ("c2", 0.02), ("c10", 0.10))
_BULK_FLOW = (
    "INSERT INTO flows (flow_id, name, tenant, status, start_ns, end_ns, service, error_type, "
    "labels, seen_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BULK_LABEL = "INSERT INTO flow_labels (flow_id, key, value) VALUES (?, ?, ?)"
_BULK_STEP = (
    "INSERT INTO steps (span_id, flow_id, name, service, status, start_ns, end_ns, error_type) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def bulk_fill(path: str, flows: int, *, seed: int = 42) -> float:
    """Write `flows` flows of `_flow_batch` (the rows `write_direct` writes, plus the
    ``cohort`` label of ``COHORTS``) in bulk: the real
    schema, created by the store's own migrations, its indexes and triggers dropped while plain
    INSERTs run in one transaction and created again after (then `schema.rebuild` fills what
    the triggers keep). Returns the seconds taken."""
    import sqlite3

    from dashfrog_sdk.store import schema

    began = time.perf_counter()
    conn = schema.connect(path, create=True)
    schema.migrate(conn)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    ddl = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
        "AND sql IS NOT NULL ORDER BY type = 'trigger', rowid"
    ).fetchall()
    for kind, name, _ in ddl:
        conn.execute(f'DROP {kind} "{name}"')
    rng = random.Random(seed)
    cohorts = random.Random(seed + 1)
    now = time.time_ns()
    seen = now
    conn.execute("BEGIN")
    for first in range(0, flows, 10_000):
        batch = _flow_batch(rng, first, min(10_000, flows - first), now)
        for f in batch.flows:
            roll, share = cohorts.random(), 0.0
            for cohort, part in COHORTS:
                share += part
                if roll < share:
                    f.labels["cohort"] = cohort
                    break
        conn.executemany(
            _BULK_FLOW,
            [
                (
                    f.flow_id,
                    f.name,
                    f.tenant,
                    f.status,
                    f.start_ns,
                    f.end_ns,
                    f.service,
                    f.error_type,
                    json.dumps(f.labels, separators=(",", ":")),
                    seen + i,
                )
                for i, f in enumerate(batch.flows)
            ],
        )
        seen += len(batch.flows)
        conn.executemany(
            _BULK_LABEL, [(f.flow_id, k, v) for f in batch.flows for k, v in f.labels.items()]
        )
        conn.executemany(
            _BULK_STEP,
            [
                (
                    s.span_id,
                    s.flow_id,
                    s.name,
                    s.service,
                    s.status,
                    s.start_ns,
                    s.end_ns,
                    s.error_type,
                )
                for s in batch.steps
            ],
        )
    conn.execute("COMMIT")
    for _, _, sql in ddl:
        conn.execute(sql)
    rebuild = getattr(schema, "rebuild", None)
    if rebuild is not None:
        rebuild(conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    sqlite3.connect(path).close()
    return time.perf_counter() - began


def cached_store(cache: str, flows: int) -> str:
    """The path of a store of `flows` bulk-written flows under `cache`, built on first use and
    kept (keyed by flow count, dataset and schema version). Treat it as read-only: copy it
    (`working_copy`) before writing."""
    from dashfrog_sdk.store import schema

    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"flows-{flows}-d{DATASET}-s{schema.SCHEMA_VERSION}.db")
    if not os.path.exists(path):
        partial = path + ".building"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(partial + suffix):
                os.remove(partial + suffix)
        took = bulk_fill(partial, flows)
        os.replace(partial, path)
        print(f"store   built {flows:,} flows in bulk in {took:.0f} s, cached as {path}")
    return path


def working_copy(source: str, target: str) -> str:
    import shutil

    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.remove(target + suffix)
    shutil.copyfile(source, target)
    return target


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


# -- whole process: the embedded default against bare OTel ---------------------------------------

_BARE = """
import resource, sys, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
class NoOp(SpanExporter):
    def export(self, spans): return SpanExportResult.SUCCESS
flows, rate = int(sys.argv[1]), float(sys.argv[2])
tp = TracerProvider()
tp.add_span_processor(BatchSpanProcessor(NoOp(), max_queue_size=flows * 4))
tracer = tp.get_tracer("bench")
began = time.perf_counter()
for i in range(flows):
    if rate and (ahead := i / rate - (time.perf_counter() - began)) > 0.002:
        time.sleep(ahead)  # paced by sleeping, not spinning: spinning would be counted as CPU
    with tracer.start_as_current_span("flow order", attributes={"tenant": f"t{i % 50}"}):
        for name in ("validate", "charge", "ship"):
            with tracer.start_as_current_span("step " + name):
                pass
produced = time.perf_counter() - began
tp.force_flush(600_000)
u = resource.getrusage(resource.RUSAGE_SELF)
print({"cpu": u.ru_utime + u.ru_stime, "produce_s": produced,
       "wall_s": time.perf_counter() - began, "stored": flows, "diagnostics": {}})
"""

_DASHFROG = """
import resource, sqlite3, sys, time
import dashfrog_sdk
from dashfrog_sdk import flow, step
flows, rate, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
dashfrog_sdk.setup(store=path)  # the embedded default: store + console
began = time.perf_counter()
for i in range(flows):
    if rate and (ahead := i / rate - (time.perf_counter() - began)) > 0.002:
        time.sleep(ahead)  # paced by sleeping, not spinning: spinning would be counted as CPU
    with flow.start("order", tenant=f"t{i % 50}", region="eu", plan="pro"):
        for name in ("validate", "charge", "ship"):
            with step.start(name):
                pass
produced = time.perf_counter() - began
assert dashfrog_sdk.flush(600)
u = resource.getrusage(resource.RUSAGE_SELF)
wall = time.perf_counter() - began
conn = sqlite3.connect(path)
stored = conn.execute("SELECT COUNT(*) FROM flows WHERE status = 'completed'").fetchone()[0]
steps = conn.execute("SELECT COUNT(*) FROM steps WHERE status = 'completed'").fetchone()[0]
print({"cpu": u.ru_utime + u.ru_stime, "produce_s": produced, "wall_s": wall,
       "stored": min(stored, steps // 3), "diagnostics": dashfrog_sdk.stats()["diagnostics"]})
"""


def _process(code: str, *args: str) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DASHFROG_"))}
    env["PYTHONPATH"] = root
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the console sink's lines
        text=True,
        check=True,
        cwd=root,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("{'cpu'")][-1]
    result: dict[str, Any] = eval(line)  # our own child's dict literal
    return result


def whole_process(flows: int, rate: float, workdir: str) -> None:
    print(f"embedded default, whole process, {flows:,} flows of 3 steps (CPU incl. final flush)")
    for label, paced in (("flat out", 0.0), (f"paced at {rate:,.0f} flows/s", rate)):
        bare = _process(_BARE, str(flows), str(paced))
        path = os.path.join(workdir, f"process-{int(paced)}.db")
        for stale in (path, path + "-wal", path + "-shm"):  # every run starts from an empty store
            if os.path.exists(stale):
                os.remove(stale)
        ours = _process(_DASHFROG, str(flows), str(paced), path)
        ratio = ours["cpu"] / bare["cpu"]
        drops = {k: v for k, v in ours["diagnostics"].items() if k.startswith("store.")}
        print(
            f"  {label:<24} bare OTel {bare['cpu'] / flows * 1e6:7.1f} us/flow "
            f"({flows / bare['produce_s']:8,.0f} flows/s)   dashfrog {ours['cpu'] / flows * 1e6:7.1f}"
            f" us/flow ({flows / ours['produce_s']:8,.0f} flows/s, {flows / ours['wall_s']:7,.0f}"
            f" flows/s stored)   {ratio:4.2f}x   stored {ours['stored']:,}/{flows:,}  "
            f"{json.dumps(drops) if drops else 'no drops'}"
        )
    print()


# -- retention and CLI start-up -------------------------------------------------------------------


def retention(path: str, keep: int) -> None:
    from dashfrog_sdk.store import writer as writer_module

    writer = StoreWriter(path, max_flows=keep)
    longest = [0.0, 0]
    retain = writer._retain

    def timed_retain(conn: Any) -> int:
        began = time.perf_counter()
        n = retain(conn)
        longest[0] = max(longest[0], time.perf_counter() - began)
        longest[1] += 1
        return n

    writer._retain = timed_retain  # type: ignore[method-assign]
    before = os.path.getsize(path) / 1e6
    began = time.perf_counter()
    deleted = writer.apply_retention()
    took = time.perf_counter() - began
    writer.close()
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = os.path.getsize(path) / 1e6
    print(
        f"retention: {deleted:,} flows deleted in {took:.1f} s, {longest[1]} slices of "
        f"{writer_module.RETENTION_SLICE:,}, longest transaction {longest[0] * 1000:.0f} ms "
        f"(busy timeout 10,000 ms); file {before:.0f} MB -> {after:.0f} MB\n"
    )


def _median_run(argv: list[str], runs: int = 7) -> tuple[float, float]:
    """Median wall time to exit, and median CPU (user + system) of the child."""
    times, cpus = [], []
    for _ in range(runs):
        before = os.times()
        began = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - began)
        after = os.times()
        cpus.append(
            after.children_user + after.children_system - before.children_user
            - before.children_system
        )  # fmt: skip
    return statistics.median(times), statistics.median(cpus)


def _small_store(workdir: str) -> str:
    """A store of 50 flows, for the start-up of a command on a small store."""
    path = os.path.join(workdir, "small.db")
    if os.path.exists(path):
        os.remove(path)
    writer = StoreWriter(path)
    writer.write(_flow_batch(random.Random(7), 0, 50, time.time_ns()))
    writer.close()
    return path


def cli_startup(path: str | None, workdir: str) -> None:
    """`dashfrog` as installed (the console script), against `python -c pass` in the same run."""
    script = [sys.executable, "-m", "dashfrog_sdk"]  # the console script's entry point
    small = _small_store(workdir)
    runs = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import click'", [sys.executable, "-c", "import click"]),
        ("dashfrog --version", [*script, "--version"]),
        ("dashfrog --help", [*script, "--help"]),
        ("dashfrog flows (50 flows)", [*script, "flows", "--store", small]),
        ("dashfrog stats (50 flows)", [*script, "stats", "--store", small]),
    ]
    if path is not None:
        runs.append(("dashfrog stats --since 1d (big)", [*script, "stats", "--since", "1d",
                                                         "--store", path]))  # fmt: skip
    print("cli start-up (median of 7, to exit)      wall        CPU    wall - python -c pass")
    bare = 0.0
    for label, argv in runs:
        wall, cpu = _median_run(argv)
        bare = bare or wall
        print(
            f"  {label:<36} {wall * 1000:6.0f} ms  {cpu * 1000:6.0f} ms  {(wall - bare) * 1000:+6.0f} ms"
        )


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


def _queries(store: FlowStore, some: str) -> list[tuple[str, Callable[[], Any], float]]:
    """(label, query, target ms or 0) for `scaled`: the queries of the main run, the label
    filters at every selectivity (the ``cohort`` label of the bulk stores) and the stats."""
    out: list[tuple[str, Callable[[], Any], float]] = [
        (
            "flows(tenant, status=failed)",
            lambda: store.flows(tenant="tenant-42", status="failed"),
            0,
        ),
        ("flows(status=failed, limit=50)", lambda: store.flows(status="failed", limit=50), 0),
        (
            "flows(tenant, status=running)",
            lambda: store.flows(tenant="tenant-42", status="running"),
            0,
        ),
        ("flows(name, since=1h)", lambda: store.flows(name="webhook", since=timedelta(hours=1)), 0),
        ("flows(labels={region: eu}) (1/3)", lambda: store.flows(labels={"region": "eu"}), 50),
        (
            "flows(labels={region: eu, plan: pro})",
            lambda: store.flows(labels={"region": "eu", "plan": "pro"}),
            50,
        ),
        (
            "flows(tenant, labels={region: eu})",
            lambda: store.flows(tenant="tenant-42", labels={"region": "eu"}),
            50,
        ),
    ]
    for cohort, share in COHORTS:
        label = {"cohort": cohort}
        out += [
            (
                f"flows(labels={{cohort: {cohort}}}) ({share:.1%})",
                partial(store.flows, labels=label),
                50,
            ),
            (
                f"flows(tenant, labels={{cohort: {cohort}}})",
                partial(store.flows, tenant="tenant-42", labels=label),
                50,
            ),
            (
                f"flows(labels={{cohort: {cohort}, region: eu}})",
                partial(store.flows, labels={**label, "region": "eu"}),
                50,
            ),
        ]
    out += [
        ("flow(id)", lambda: store.flow(some), 0),
        ("stats(since=1d)", lambda: store.stats(since=timedelta(days=1)), 200),
        ("stats(since=1h)", lambda: store.stats(since=timedelta(hours=1)), 0),
        ("stats(since=7d)", lambda: store.stats(since=timedelta(days=7)), 0),
        ("stats() (all)", lambda: store.stats(), 0),
        ("stats(since=1d, tenant)", lambda: store.stats(since="1d", tenant="tenant-42"), 0),
        ("count()", lambda: store.count(), 0),
    ]
    return out


def scaled(cache: str, flows: int, baseline: int) -> int:
    """The queries on cached bulk stores of `baseline` and `flows` flows, side by side: each
    figure next to its target and the baseline -> `flows` ratio (same run, same load)."""
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    paths = {n: cached_store(cache, n) for n in (baseline, flows)}
    results: dict[int, list[tuple[str, float, float, float]]] = {}
    for n, path in paths.items():
        with FlowStore(path) as store:
            total = store.count()
            some = store.flows(tenant="tenant-42", limit=1)[0].id
            results[n] = []
            for label, fn, target in _queries(store, some):
                cold, median, _ = timed(fn)
                results[n].append((label, cold * 1000, median * 1000, target))
        print(f"store   {path}: {total:,} flows, {os.path.getsize(path) / 1e6:,.0f} MB")
    small, big = results[baseline], results[flows]
    print(
        f"\n{'query':<44} {f'{baseline:,}':>10} {f'{flows:,} cold':>16} {'median':>9} "
        f"{'target':>8} {'ratio':>7}"
    )
    missed = 0
    for (label, _, base, _), (_, cold, median, target) in zip(small, big, strict=True):
        verdict = ""
        if target:
            verdict = "ok" if median < target else "MISSED"
            missed += median >= target
        shown = f"{target:.0f} ms" if target else "-"
        print(
            f"  {label:<42} {base:7.1f} ms {cold:13.1f} ms {median:6.1f} ms {shown:>8} "
            f"{median / base if base else 0:6.1f}x  {verdict}"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    with tempfile.TemporaryDirectory() as workdir:  # the 50-flow store of cli_startup
        cli_startup(paths[flows], workdir)
    print(f"\ntargets missed: {missed}")
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--otel-flows", type=int, default=2_000)
    parser.add_argument("--process-flows", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=5_000)
    parser.add_argument("--path", help="store file (default: a temporary file, removed after)")
    parser.add_argument(
        "--only",
        choices=("process", "cli"),
        help="only section 3 (embedded default, whole process) or 6 (CLI start-up)",
    )
    parser.add_argument(
        "--chdb",
        action="store_true",
        help="SQLite and ClickHouse (chDB) side by side at --sizes (benchmarks/store_backends.py)",
    )
    parser.add_argument("--sizes", default="100000,1000000", help="with --chdb: flow counts")
    parser.add_argument("--sqlite-up-to", help="with --chdb: skip SQLite above this many flows")
    parser.add_argument(
        "--data-dir", help="with --chdb: keep the generated stores here, reuse them"
    )
    parser.add_argument(
        "--cache",
        help="only the queries, on stores of --baseline-flows and --flows flows built once in "
        "bulk and kept in this directory (e.g. /work/data/sqlscale), side by side",
    )
    parser.add_argument("--baseline-flows", type=int, default=100_000)
    args = parser.parse_args()
    if args.cache:
        return scaled(args.cache, args.flows, args.baseline_flows)
    if args.chdb:
        import store_backends

        extra = ["--sqlite-up-to", args.sqlite_up_to] if args.sqlite_up_to else []
        extra += ["--data-dir", args.data_dir] if args.data_dir else []
        return store_backends.main(["--sizes", args.sizes, *extra])
    tmp = None
    if args.path:
        path = args.path
    else:
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, "flows.db")
    workdir = os.path.dirname(os.path.abspath(path))
    try:
        if args.only == "cli":
            cli_startup(None, workdir)
            return 0
        if args.process_flows:
            whole_process(args.process_flows, args.rate, workdir)
        if args.only == "process":
            return 0
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
                ("flows(labels={region: eu})", lambda: store.flows(labels={"region": "eu"})),
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
        retention(path, max(1, total // 10))
        cli_startup(path, workdir)
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
