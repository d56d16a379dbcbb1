"""The application's own providers: their force_flush() / shutdown() deliver dashfrog's events.

A Lambda handler that force-flushes at the end of each invocation, a test fixture with
in-memory exporters, `opentelemetry-instrument`: they flush their providers, never dashfrog.
Each case runs in a fresh interpreter (global providers are set once per process), with the
application's batch processors on a 60 s schedule, so only the flush itself can deliver, and
no call into dashfrog_sdk other than the flows themselves (setup() is the first flow's).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.support import ROOT, clean_env

PRELUDE = """
from opentelemetry import trace, _logs
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor, InMemoryLogRecordExporter, SimpleLogRecordProcessor)

spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
tp, lp = TracerProvider(), LoggerProvider()
SLOW = dict(schedule_delay_millis=60_000, max_queue_size=100_000, max_export_batch_size=512)
tp.add_span_processor(BatchSpanProcessor(spans, **SLOW))
lp.add_log_record_processor(
    SimpleLogRecordProcessor(logs) if SIMPLE_LOGS else BatchLogRecordProcessor(logs, **SLOW))
trace.set_tracer_provider(tp); _logs.set_logger_provider(lp)

from dashfrog_sdk import flow, step

N = 300
for i in range(N):
    with flow.start("order", tenant="acme", end_on_exit=i % 2 == 0):
        with step.start("charge"):
            pass
        if i % 2:
            flow.end()  # a dashfrog.flow.end event

def delivered():
    names = [r.log_record.event_name for r in logs.get_finished_logs()]
    return {name: names.count(name) for name in set(names)}

def open_starts(flow_id):
    # The start events of the flow and step still open at the flush: work that has not ended
    # always has its start event sent (a start event of work that already ended may be left
    # out, its span says it all: README, Data model).
    return sorted(
        r.log_record.event_name for r in logs.get_finished_logs()
        if r.log_record.attributes.get("dashfrog.flow.id") == flow_id
    )

# The end event of each flow.end(), and the open flow's two start events.
EXPECTED_ENDS = N // 2
EXPECTED_OPEN = ["dashfrog.flow.start", "dashfrog.step.start"]
"""


def inside_open_work(call: str, *checks: str) -> str:
    """`call` made while a flow and its step are still open, then `checks`."""
    body = "\n".join(
        f"        {line}" for line in (call, "got, ends = open_starts(open_id), delivered()")
    )
    return "\n".join(
        [
            'with flow.start("order", tenant="acme") as open_id:',
            '    with step.start("pack"):',
            body,
            "assert got == EXPECTED_OPEN, got",
            'assert ends.get("dashfrog.flow.end") == EXPECTED_ENDS, ends',
            *checks,
            'print("OK")',
        ]
    )


def run(code: str, simple_logs: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", f"SIMPLE_LOGS = {simple_logs}\n{PRELUDE}\n{textwrap.dedent(code)}"],
        env={**clean_env(), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "call",
    [
        "assert lp.force_flush(10_000)",
        "lp.shutdown()",
    ],
)
def test_logger_provider_flush_delivers_lifecycle_events(call: str) -> None:
    proc = run(inside_open_work(call))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


@pytest.mark.parametrize(
    "call",
    [
        "assert tp.force_flush(10_000)",
        "tp.shutdown()",
    ],
)
def test_tracer_provider_flush_delivers_lifecycle_events(call: str) -> None:
    """The application flushes its tracer provider only, and logs with a simple processor:
    the events dashfrog was holding reach the log pipeline too, and the spans are all out."""
    proc = run(
        inside_open_work(call, "assert len(spans.get_finished_spans()) >= 2 * N"),
        simple_logs=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
