"""The metrics API (Counter, Histogram, Gauge per tenant), the automatic flow metrics,
and the cardinality bound on tenants."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from dashfrog_sdk import metrics
from tests.export.conftest import APP, ROOT, app_env

# -- argument errors: raised at the call site, before anything is configured ------------------


def test_missing_tenant_names_the_argument() -> None:
    orders = metrics.Counter("t.orders", labels=["region"])
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'tenant'"):
        orders.add(1, region="eu")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"t.orders.add\(\): tenant must be a non-empty string"):
        orders.add(1, tenant=None, region="eu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tenant must be a non-empty string, got ''"):
        orders.add(1, tenant="", region="eu")
    with pytest.raises(TypeError, match="tenant must be a non-empty string, got 42"):
        orders.add(1, tenant=42, region="eu")  # type: ignore[arg-type]


def test_wrong_labels_name_the_label() -> None:
    orders = metrics.Counter("t.orders2", labels=["region"])
    with pytest.raises(
        ValueError, match=r"unknown label 'regoin' for metric 't.orders2' \(declared: region\)"
    ):
        orders.add(1, tenant="acme", regoin="eu")
    with pytest.raises(ValueError, match="missing label 'region'"):
        orders.add(1, tenant="acme")
    with pytest.raises(TypeError, match="label 'region' must be str, int, float or bool"):
        orders.add(1, tenant="acme", region=["eu"])
    sizes = metrics.Histogram("t.sizes")
    with pytest.raises(
        ValueError, match=r"unknown label 'kind' for metric 't.sizes' \(declared: none\)"
    ):
        sizes.record(3, tenant="acme", kind="x")


def test_bad_values_and_declarations() -> None:
    orders = metrics.Counter("t.orders3")
    with pytest.raises(ValueError, match="value must be a number >= 0"):
        orders.add(-1, tenant="acme")
    with pytest.raises(TypeError, match="value must be a number"):
        orders.add("1", tenant="acme")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value must be a number"):
        metrics.Histogram("t.h").record(None, tenant="acme")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must start with a letter"):
        metrics.Counter("1orders")
    with pytest.raises(ValueError, match="label 'tenant' is not a valid label name"):
        metrics.Counter("t.x", labels=["tenant"])
    with pytest.raises(TypeError, match="labels must be a list of label names"):
        metrics.Counter("t.x", labels="region")
    with pytest.raises(ValueError, match="labels has duplicates"):
        metrics.Counter("t.x", labels=["a", "a"])
    with pytest.raises(ValueError, match="buckets must be increasing"):
        metrics.Histogram("t.x", buckets=[5, 1])
    with pytest.raises(TypeError, match="callback must be callable"):
        metrics.Gauge("t.g", callback=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="gauge.set\\(\\): value must be a number"):
        metrics.Gauge("gauge").set("full", tenant="acme")  # type: ignore[arg-type]


# -- recorded values, in a fresh interpreter with an in-memory reader --------------------------

IN_MEMORY = """
import json, logging, tracemalloc
logging.basicConfig()
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
import dashfrog_sdk
from dashfrog_sdk import flow, step, metrics
dashfrog_sdk.setup(meter_provider=MeterProvider(metric_readers=[reader]))

def points(name):
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    return [(dict(p.attributes), getattr(p, "value", None) if hasattr(p, "value") else p.count)
                            for p in m.data.data_points]
    return []
"""


def run_in_memory(code: str, **env: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", IN_MEMORY + code],
        env=app_env(None, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def test_tenant_cardinality_is_bounded_without_growing_memory() -> None:
    result = run_in_memory(
        """
orders = metrics.Counter("orders", labels=["region"])
for i in range(1000):                       # 100 sets, then 900 into the overflow set
    orders.add(1, tenant=f"t{i}", region="eu")
tracemalloc.start()
for i in range(1000, 2000):
    orders.add(1, tenant=f"t{i}", region="eu")
before = tracemalloc.take_snapshot()
for i in range(2000, 52000):               # 50 000 more tenants
    orders.add(1, tenant=f"t{i}", region="eu")
after = tracemalloc.take_snapshot()
growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
got = points("orders")
overflow = [v for a, v in got if a.get("otel.metric.overflow")]
print(json.dumps({"points": len(got), "overflow": overflow, "total": sum(v for _, v in got),
                  "growth": growth}))
""",
        DASHFROG_METRICS_CARDINALITY_LIMIT="100",
    )
    assert result["points"] == 101  # the limit, plus the overflow set
    assert result["overflow"] == [52000 - 100]
    assert result["total"] == 52000  # nothing lost: totals stay right
    assert result["growth"] < 64 * 1024, result  # 50k new tenants, no growth
    assert result["stderr"].count("reached 100 attribute sets") == 1


def test_automatic_flow_metrics_and_gauge_callbacks() -> None:
    result = run_in_memory(
        """
def depths():
    yield 4, {"tenant": "acme", "queue": "imports"}
    yield 1, {"tenant": "acme"}                  # missing label: reported, not raised
metrics.Gauge("queue.depth", callback=depths, labels=["queue"])
metrics.Gauge("broken", callback=lambda: 1 / 0)
for tenant in ("acme", "acme", "globex"):
    with flow.start("import", tenant=tenant):
        with step.start("parse"):
            pass
try:
    with flow.start("import", tenant="globex"), step.start("load"):
        raise ValueError("bad row")
except ValueError:
    pass
dashfrog_sdk.flush()
data = {name: points(name) for name in
        ("dashfrog.flows.started", "dashfrog.flows.ended", "dashfrog.flow.duration",
         "dashfrog.step.duration", "queue.depth", "broken")}
print(json.dumps(data))
"""
    )
    started = {a["dashfrog.tenant"]: v for a, v in result["dashfrog.flows.started"]}
    assert started == {"acme": 2, "globex": 2}
    ended = {
        (a["dashfrog.tenant"], a["dashfrog.flow.status"]): v
        for a, v in result["dashfrog.flows.ended"]
    }
    assert ended == {("acme", "completed"): 2, ("globex", "completed"): 1, ("globex", "failed"): 1}
    durations = {
        (a["dashfrog.tenant"], a["dashfrog.flow.status"]): n
        for a, n in result["dashfrog.flow.duration"]
    }
    assert durations == ended  # one duration per ended flow
    steps = {
        (a["dashfrog.step.name"], a["dashfrog.step.status"])
        for a, _ in result["dashfrog.step.duration"]
    }
    assert steps == {("parse", "completed"), ("load", "failed")}
    assert result["queue.depth"] == [[{"dashfrog.tenant": "acme", "queue": "imports"}, 4]]
    assert result["broken"] == []
    assert "gauge 'broken' callback failed" in result["stderr"]
    assert "queue.depth callback: missing label 'queue'" in result["stderr"]


def test_metric_calls_before_setup_configure_from_the_environment() -> None:
    """A metric recorded before any flow or setup() configures the SDK, as a flow would."""
    code = (
        "from dashfrog_sdk import metrics\n"
        "from dashfrog_sdk._runtime import runtime\n"
        "metrics.Counter('early').add(1, tenant='acme')\n"
        "print(runtime.configured)"
    )
    proc = subprocess.run(
        [sys.executable, str(APP), "--script", code],
        env=app_env(None),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
