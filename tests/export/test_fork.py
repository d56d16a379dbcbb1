"""Pre-fork servers: a forked child exports its own data through its own connection,
without re-sending what the parent had queued, the parent still delivers its queue, and the
child's stats() start at zero."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.export.conftest import App, app_env
from tests.support.collector import RotelCollector

SCRIPT = """
import json, os, sys
import dashfrog_sdk
dashfrog_sdk.setup()
parent = run_flows(30)["ids"]          # still queued at fork time (60 s batch delay)
pid = os.fork()
if pid == 0:
    child = run_flows(20, name="child")["ids"]
    print(json.dumps({"child": child}), flush=True)
    sys.exit(0)                        # the child's atexit flush
_, status = os.waitpid(pid, 0)
print(json.dumps({"parent": parent, "status": status}), flush=True)
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_forked_child_exports_without_duplicating_the_parents_queue(
    collector: RotelCollector, start_app: Callable[..., App], protocol: Any
) -> None:
    env = app_env(
        collector,
        protocol,
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_BLRP_SCHEDULE_DELAY="60000",
        OTEL_METRIC_EXPORT_INTERVAL="60000",
    )
    app = start_app(env, SCRIPT)
    assert app.wait() == 0, app.stderr
    out: dict[str, Any] = {}
    for line in app.output():
        out |= json.loads(line)
    assert out["status"] == 0
    service = env["OTEL_SERVICE_NAME"]
    receiver = collector.receiver
    spans = receiver.wait_for_spans(
        lambda s: s.resource.get("service.name") == service and s.name.startswith("flow "),
        count=50,
    )
    seen = Counter(s.attributes["dashfrog.flow.id"] for s in spans)
    assert set(seen) == set(out["parent"]) | set(out["child"])
    assert max(seen.values()) == 1, "a flow was exported twice"
    instances = {s.name: s.resource["service.instance.id"] for s in spans}
    assert instances["flow order"] != instances["flow child"]  # the SDK re-detects it at fork

    # Metrics: each process reports its own flows; the child did not inherit the parent's 30.
    def by_instance() -> dict[str, Any]:
        found = {
            m.resource["service.instance.id"]: m
            for m in receiver.metrics
            if m.resource.get("service.name") == service and m.name == "dashfrog.flows.started"
        }
        return found if len(found) == 2 else {}

    started = receiver.wait_for(by_instance, message="flows.started from both processes")
    parent_points = started[instances["flow order"]].points
    child_points = started[instances["flow child"]].points
    assert [(a["dashfrog.flow.name"], v) for a, v in parent_points] == [("order", 30)]
    assert [(a["dashfrog.flow.name"], v) for a, v in child_points] == [("child", 20)]


COUNTS_SCRIPT = """
import json, os
import dashfrog_sdk
from dashfrog_sdk.exporting import counts
counts.counters["traces"].add("exported", 7)
counts.counters["logs"].add("failed", 2)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, json.dumps(dashfrog_sdk.stats()).encode())
    os._exit(0)
os.close(write)
child = json.loads(os.read(read, 65536))
os.waitpid(pid, 0)
print(json.dumps({"child": child, "parent": dashfrog_sdk.stats()}))
"""


def test_a_forked_childs_stats_start_at_zero() -> None:
    # stats() in a forked child (Celery prefork, gunicorn) counts the child's own exports.
    import subprocess
    import sys

    from tests.support import ROOT, clean_env

    out = subprocess.run(
        [sys.executable, "-c", COUNTS_SCRIPT],
        env=clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["parent"]["traces"]["exported"] == 7 and seen["parent"]["logs"]["failed"] == 2
    assert seen["child"]["traces"]["exported"] == 0
    assert seen["child"]["logs"]["failed"] == 0
