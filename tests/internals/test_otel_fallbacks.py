"""Every OTel private-name shortcut (dashfrog_sdk._otel) has a public fallback that gives the
same results: with DASHFROG_OTEL_PUBLIC_ONLY=1 each fallback is in force, and the core checks
(attributes, contexts, baggage, statuses, events) pass again on the public paths."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT, clean_env

FORCED = clean_env(DASHFROG_OTEL_PUBLIC_ONLY="1")

pytestmark = pytest.mark.skipif(
    os.environ.get("DASHFROG_OTEL_PUBLIC_ONLY") == "1", reason="already on the public paths"
)

CHECK = """
from opentelemetry import context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from dashfrog_sdk._otel import PUBLIC_ONLY, attributes, histograms, keys, log_records, metrics, spans

assert PUBLIC_ONLY
assert keys.BAGGAGE_KEY == "" and keys.SPAN_KEY == ""
assert keys.SUPPRESS_INSTRUMENTATION_KEY is None
assert keys.detach is context.detach
span = TracerProvider().get_tracer("t").start_span("s")
assert spans.writable(span, 1) is None
span.set_attribute("k", "v")
assert attributes.span_attributes(span) is not span._attributes._dict
logger = LoggerProvider().get_logger("t")
assert log_records.emitter(logger) == logger.emit
reader = InMemoryMetricReader()
assert metrics.preferences(reader) == (None, None)
provider = MeterProvider(metric_readers=[reader])
assert metrics.fresh_storage(provider, reader) is False
histogram = provider.get_meter("t").create_histogram("h")
histogram.record(1.0, {"a": "b"})
assert histograms._aggregations(histogram, {"a": "b"}, 2.0) is None
print("all fallbacks in force")
"""


def test_every_fallback_is_in_force_when_forced() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], env=FORCED, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "all fallbacks in force" in out.stdout


def test_the_core_checks_pass_again_on_the_public_paths() -> None:
    files = [
        "flows/test_spans.py",
        "flows/test_context.py",
        "propagation/test_propagation.py",
        "flows/test_status.py",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [f"tests/{name}" for name in files],
        env=FORCED,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout
