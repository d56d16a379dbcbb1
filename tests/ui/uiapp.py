"""Real flows for the viewer's tests, through the real dashfrog_sdk API, run as subprocesses.

    python tests/ui/uiapp.py api                # the "api" service's part; prints ids + carriers
    python tests/ui/uiapp.py billing CARRIERS   # the "billing" service ends those flows
    python tests/ui/uiapp.py hold GATE_FILE     # a flow that waits in a step until GATE_FILE
    python tests/ui/uiapp.py bulk N [TENANTS]   # N small flows over 3 (or TENANTS) tenants,
                                                # every seventh failed with TENANTS (pagination)
    python tests/ui/uiapp.py progress GATE      # a step at 40%, at 80% after GATE.1, ends after
                                                # GATE.2 with an artifact

Configuration comes from the environment (DASHFROG_STORE, OTEL_SERVICE_NAME), as deployed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from opentelemetry import context as otel_context
from opentelemetry import propagate

import dashfrog_sdk
from dashfrog_sdk import flow, step
from dashfrog_sdk.propagation import destination

log = logging.getLogger("shop")

# The security issue's hostile strings: markup, attribute breakers, Mermaid directives.
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">order'
HOSTILE_TENANT = 'evil"><script>window.__pwned=2</script>'
HOSTILE_STEP = "step'><svg onload=window.__pwned=3>%%{init: {'securityLevel':'loose'}}%%"
HOSTILE_ERROR = "</pre><script>window.__pwned=4</script> -->>S0: injected"


def handoff(name: str, tenant: str, **labels: str) -> tuple[str, dict[str, str]]:
    """A flow the api starts and the billing service ends (two services, one flow)."""
    with flow.start(name, tenant=tenant, end_on_exit=False, **labels) as fid:
        with step.start("validate_order"):
            with step.start("check_stock"):
                log.info("stock ok for %s", tenant)
        carrier: dict[str, str] = {}
        with destination("http://billing:8000"), step.start("enqueue"):
            propagate.inject(carrier)
    return fid, carrier


def api() -> dict[str, object]:
    out: dict[str, object] = {"handoffs": {}}
    handoffs: dict[str, object] = {}
    for key, tenant in (("acme_ok", "acme-corp"), ("globex_failed", "globex")):
        fid, carrier = handoff("order_processing", tenant, region="eu")
        handoffs[key] = {"flow_id": fid, "carrier": carrier, "fail": key.endswith("failed")}
    out["handoffs"] = handoffs
    with flow.start("data_import", tenant="acme-corp", source="s3") as fid:
        out["import"] = fid
        with step.start("load") as s:
            flow.event("rows_loaded", rows=120)
            s.progress(120, total=120)
            s.artifact("summary", {"rows": 120, "source": "s3"})
        with flow.start("notify", tenant="acme-corp") as child:
            out["child"] = child
            with step.start("email"):
                pass
    with flow.start("report", tenant="initech") as fid:
        out["initech"] = fid
        with step.start("render"):
            pass
    try:
        with flow.start(HOSTILE_NAME, tenant=HOSTILE_TENANT, note="</td><b>x</b>") as fid:
            out["hostile"] = fid
            with step.start(HOSTILE_STEP) as s:
                s.progress(1, total=3, message=HOSTILE_ERROR)
                s.artifact(
                    "evil", {"name": HOSTILE_NAME, "step": HOSTILE_STEP, "pre": HOSTILE_ERROR}
                )
                raise RuntimeError(HOSTILE_ERROR)
    except RuntimeError:
        pass
    assert dashfrog_sdk.flush(60), "flush did not finish in 60 s"
    return out


def billing(handoffs: dict[str, dict[str, object]]) -> None:
    for item in handoffs.values():
        carrier = item["carrier"]
        assert isinstance(carrier, dict)
        token = otel_context.attach(propagate.extract(carrier))
        try:
            try:
                with step.start("charge_card", provider="stripe"):
                    if item["fail"]:
                        raise ValueError("card declined by issuer (code 51)")
            except ValueError as exc:
                flow.fail(exc)
            else:
                flow.end()
        finally:
            otel_context.detach(token)
    assert dashfrog_sdk.flush(60), "flush did not finish in 60 s"


def hold(gate: str) -> None:
    with flow.start("long_job", tenant="initech", kind="nightly") as fid:
        print(json.dumps({"flow_id": fid}), flush=True)
        with step.start("prepare"):
            pass
        with step.start("crunch"):
            dashfrog_sdk.flush(10)  # the running step is in the store while we wait
            deadline = time.monotonic() + 120
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
    assert dashfrog_sdk.flush(60)


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def progress(gate: str) -> None:
    with flow.start("long_import", tenant="initech") as fid:
        print(json.dumps({"flow_id": fid}), flush=True)
        with step.start("import_rows") as s:
            s.progress(40, total=100, message="batch 1")
            dashfrog_sdk.flush(10)
            _wait_for(gate + ".1")
            s.progress(80, total=100, message="batch 2")  # past the throttle: recorded now
            dashfrog_sdk.flush(10)
            _wait_for(gate + ".2")
            s.artifact("summary", {"rows": 100, "note": "<b>not bold</b>"})
    assert dashfrog_sdk.flush(60)


def bulk(count: int, tenants: int | None = None) -> None:
    for i in range(count):
        try:
            with flow.start("bulk", tenant=f"t{i % (tenants or 3)}", n=i), step.start("only"):
                if tenants and i % 7 == 0:
                    raise RuntimeError(f"bulk failure {i}")
        except RuntimeError:
            pass
    assert dashfrog_sdk.flush(60)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if argv[0] == "api":
        print(json.dumps(api()))
    elif argv[0] == "billing":
        billing(json.loads(argv[1]))
    elif argv[0] == "hold":
        hold(argv[1])
    elif argv[0] == "progress":
        progress(argv[1])
    elif argv[0] == "bulk":
        bulk(int(argv[1]), int(argv[2]) if len(argv) > 2 else None)
    else:
        raise SystemExit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
