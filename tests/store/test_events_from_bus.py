"""The store takes dashfrog's lifecycle events straight from the bus (store.processor.
StoreEventSink) instead of decoding the OTel log records the dispatcher built for it: the rows
must be exactly those the OTel log record path gives, and nothing else may lose its records.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, clean_env

# Real flows through the real API (every kind of event: starts of work still running, a
# custom event, a failure, a cross-process style end, a flow timeout, labels), their lifecycle
# records taken from the bus and their spans from a span processor. Then the same records go
# to two stores: (a) through the OTel path (OtelEventEmitter -> Logger -> StoreLogProcessor)
# and (b) from the bus (StoreEventSink), each with the same spans.
MAKE = """
import sys, threading
import dashfrog_sdk
from dashfrog_sdk import flow, step
from dashfrog_sdk.lifecycle import bus
from dashfrog_sdk.setup import installed_providers
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource

dashfrog_sdk.setup(store=False, console=False, service_name="svc")
records, spans = [], []
bus.add_sink(records.extend)
class Keep(SpanProcessor):
    def on_end(self, span): spans.append(span)
installed_providers()[0].add_span_processor(Keep())

with flow.start("order", tenant="acme", region="eu", plan="pro", timeout=30):
    with step.start("validate"):
        bus.flush()  # the flow and the step are still running: their starts are sent
        flow.event("checked", items=3, note="ok")
    with step.start("charge", amount=12.5):
        pass
try:
    with flow.start("broken", tenant="acme"):
        with step.start("explode"):
            bus.flush()
            raise ValueError("no <stock> \\x1b[31m")
except ValueError:
    pass
with flow.start("handoff", tenant="t2", end_on_exit=False):
    with step.start("enqueue", optional=True):
        pass
    bus.flush()
    flow.fail("downstream said no")  # the flow.end event, with a message and no type
with flow.start("quick", tenant="t3"):
    with step.start("a"):
        pass
with flow.start("imports", tenant="t3"):  # progress, an artifact and a step's options
    with step.start("rows", timeout=5) as s:
        s.progress(1, total=2)
        bus.flush()  # sampled while the step runs
        s.progress(2, total=2, message="done")
        s.artifact("summary", {"rows": 2})
bus.flush()

from dashfrog_sdk.sinks.otel_logs import OtelEventEmitter
from dashfrog_sdk.store.processor import StoreEventSink, StoreLogProcessor, StoreQueue
from dashfrog_sdk.store.writer import StoreWriter
from dashfrog_sdk import conventions as c

def store(path, from_bus):
    queue = StoreQueue(StoreWriter(path))
    if from_bus:
        StoreEventSink(queue, "svc")(records)
    else:
        lp = LoggerProvider(resource=Resource.create({"service.name": "svc"}))
        lp.add_log_record_processor(StoreLogProcessor(queue))
        OtelEventEmitter(lp.get_logger(c.SCOPE_NAME))(records)
    for span in spans:
        queue.put(span, False)
    assert queue.flush(30)
    queue.shutdown()
    return sum(r.kind in c.OTEL_EVENTS for r in records)

print(store(sys.argv[1], False), store(sys.argv[2], True))
"""


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = {}
        for table in tables:
            # When each migration ran; where the stats tails' time edges stand (the clock).
            if table in ("schema_version", "flow_tail_edges"):
                continue
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            keep = [col for col in columns if col not in ("seen_ns", "id")]  # commit order
            rows = conn.execute(f"SELECT {', '.join(keep)} FROM {table}").fetchall()
            found[table] = sorted(rows, key=repr)
        return found
    finally:
        conn.close()


def test_events_from_the_bus_give_the_rows_the_otel_log_records_give(tmp_path: Path) -> None:
    via_otel, via_bus = tmp_path / "otel.db", tmp_path / "bus.db"
    proc = subprocess.run(
        [sys.executable, "-c", MAKE, str(via_otel), str(via_bus)],
        env=clean_env(), capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events_a, events_b = map(int, proc.stdout.split())
    assert events_a == events_b >= 6  # starts still running, the custom event, the end
    otel, bus = _rows(via_otel), _rows(via_bus)
    assert otel == bus
    # The comparison is not vacuous: events, step starts and flow rows are there.
    assert len(otel["flows"]) == 5 and len(otel["events"]) >= 1 and len(otel["steps"]) == 6
    assert {r[1] for r in otel["flows"]} == {"order", "broken", "handoff", "quick", "imports"}
    assert len(otel["artifacts"]) == 1


# The embedded default builds no OTel log record for its events; a log processor the
# application adds later gets them all the same, and the store still holds each event once.
DEFAULT = """
import sys
import dashfrog_sdk
from dashfrog_sdk import flow, step
from dashfrog_sdk.lifecycle import bus
from dashfrog_sdk._otel import log_records
from dashfrog_sdk.setup import installed_providers
from opentelemetry.sdk._logs import LogRecordProcessor

built = []
emitter = log_records.emitter
def counting(logger):
    emit = emitter(logger)
    def count(record):
        built.append(record.event_name)
        emit(record)
    return count
log_records.emitter = counting

dashfrog_sdk.setup(store=sys.argv[1], console=False)
def one(name):
    with flow.start(name, tenant="acme"):
        with step.start("s"):
            bus.flush()  # still running: their start events are sent
            flow.event("seen")
one("before")
assert dashfrog_sdk.flush(30)
before = len(built)

got = []
class Mine(LogRecordProcessor):
    def on_emit(self, record): got.append(record.log_record.event_name)
    emit = on_emit
    def shutdown(self): pass
    def force_flush(self, timeout_millis=0): return True
installed_providers()[1].add_log_record_processor(Mine())
one("after")
assert dashfrog_sdk.flush(30)
print(before, sorted(got))
"""


def test_the_embedded_default_builds_no_log_record_yet_an_added_processor_gets_them(
    tmp_path: Path,
) -> None:
    store = tmp_path / "flows.db"
    proc = subprocess.run(
        [sys.executable, "-c", DEFAULT, str(store)],
        env=clean_env(), capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    before, got = proc.stdout.split(" ", 1)
    assert before == "0"
    assert got.strip() == repr(
        sorted(["dashfrog.flow.start", "dashfrog.step.start", "dashfrog.flow.event"])
    )
    conn = sqlite3.connect(store)
    try:
        events = conn.execute(
            "SELECT f.name, e.name FROM events e JOIN flows f USING (flow_id) ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()
    assert events == [("after", "seen"), ("before", "seen")]  # each once, either way
