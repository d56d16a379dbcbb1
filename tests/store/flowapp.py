"""A small application using the real dashfrog_sdk API, run as a subprocess by the store tests.

    python tests/store/flowapp.py demo              # a few finished flows; prints their ids
    python tests/store/flowapp.py many N TAG        # N flows with 3 steps each
    python tests/store/flowapp.py start_remote      # end_on_exit=False; prints the carrier
    python tests/store/flowapp.py finish_remote CARRIER_JSON   # a "worker" ends that flow
    python tests/store/flowapp.py hold GATE_FILE [S]  # a flow that waits in a step for GATE_FILE
                                                    # (S: the step's timeout)
    python tests/store/flowapp.py timeout           # a flow with a 0.2 s timeout never ended
    python tests/store/flowapp.py steps N           # one flow with N steps, as fast as possible
    python tests/store/flowapp.py phases N GATE     # N flows, flush, wait for GATE, N more flows
    python tests/store/flowapp.py fill N            # N flows with 2 KB labels (a full disk)
    python tests/store/flowapp.py options           # retries, raise_on_error=False, a timeout

Configuration comes from the environment (DASHFROG_STORE, OTEL_SERVICE_NAME), as in a real
deployment; `setup()` is left to the first flow, so this also tests the automatic setup.
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

log = logging.getLogger("shop.orders")


def demo() -> dict[str, str]:
    ids: dict[str, str] = {}
    with flow.start("order_processing", tenant="acme-corp", region="eu", priority=2) as fid:
        ids["completed"] = fid
        with step.start("validate_order", order_id="o-1", amount=42.5):
            log.info("validating order %s", "o-1")
            with step.start("check_stock"):
                pass
        flow.event("payment_retried", attempt=2)
        with step.start("charge"):
            log.warning("card network slow")
        with flow.start("send_receipt", tenant="acme-corp") as child:
            ids["child"] = child
            with step.start("render"):
                pass
    try:
        with flow.start("order_processing", tenant="acme-corp", region="us") as fid:
            ids["failed"] = fid
            with step.start("validate_order", order_id="o-2"):
                pass
            with step.start("charge"):
                raise ValueError("card declined; code #51")
    except ValueError:
        pass
    with flow.start("data_import", tenant="globex", source="s3") as fid:
        ids["optional"] = fid
        try:
            with step.start("enrich", optional=True):
                raise TimeoutError("geo service down")
        except TimeoutError:
            pass
        with step.start("load") as s:
            for i in range(1000):
                s.progress(i + 1, total=1000, message="rows")
            s.artifact("summary", {"rows": 1000, "rejected": 3, "note": "<b>ok</b>"})
    return ids


def many(count: int, tag: str) -> None:
    for i in range(count):
        with flow.start("bulk", tenant=f"t{i % 7}", writer=tag, n=i):
            for name in ("a", "b", "c"):
                with step.start(name):
                    pass
    # Wait for the store, however loaded the machine: the exit flush alone is bounded by
    # DASHFROG_SHUTDOWN_TIMEOUT (5 s), which two writers on a busy CI box can exceed.
    assert dashfrog_sdk.flush(60), "flush did not finish in 60 s"
    print(json.dumps(dashfrog_sdk.stats()["diagnostics"]))


def steps(count: int) -> None:
    with flow.start("huge", tenant="initech"):
        for _ in range(count):
            with step.start("item"):
                pass
    assert dashfrog_sdk.flush(120), "flush did not finish in 120 s"
    print(json.dumps(dashfrog_sdk.stats()["diagnostics"]))


def fill(count: int) -> None:
    """Flows with bulky labels, to fill a small filesystem; the flush is allowed to fail."""
    for i in range(count):
        with flow.start("bulky", tenant="acme", n=i, blob="x" * 2000), step.start("a"):
            pass
    dashfrog_sdk.flush(10)
    print(json.dumps(dashfrog_sdk.stats()["diagnostics"]))


def phases(count: int, gate: str) -> None:
    """`count` flows tagged phase=1, flushed; then, once `gate` exists, `count` more (phase=2).

    The test does something to the store file between the phases (deletes it, replaces it).
    """
    for phase in (1, 2):
        if phase == 2:
            deadline = time.monotonic() + 60
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
        for i in range(count):
            with flow.start("phased", tenant="acme", phase=phase, n=i), step.start("work"):
                pass
        assert dashfrog_sdk.flush(60), "flush did not finish in 60 s"
        print(
            json.dumps({"phase": phase, "stats": dashfrog_sdk.stats()["diagnostics"]}), flush=True
        )


def start_remote() -> dict[str, object]:
    with flow.start("checkout", tenant="acme-corp", end_on_exit=False, channel="web") as fid:
        with step.start("reserve"):
            pass
        carrier: dict[str, str] = {}
        with destination("http://worker:8000"), step.start("enqueue"):
            propagate.inject(carrier)
    return {"flow_id": fid, "carrier": carrier}


def finish_remote(carrier: dict[str, str]) -> None:
    token = otel_context.attach(propagate.extract(carrier))
    try:
        with step.start("ship", carrier="dhl"):
            time.sleep(0.01)
        flow.end()
    finally:
        otel_context.detach(token)


def hold(gate: str, step_timeout: float | None = None) -> None:
    with flow.start("long_job", tenant="initech") as fid:
        print(json.dumps({"flow_id": fid}), flush=True)
        with step.start("prepare"):
            pass
        with step.start("crunch", timeout=step_timeout):
            deadline = time.monotonic() + 60
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)


def hold_progress(gate: str) -> None:
    """A step that says how far it is, waits for `gate`, then finishes with an artifact."""
    with flow.start("long_import", tenant="initech") as fid:
        print(json.dumps({"flow_id": fid}), flush=True)
        with step.start("import_rows") as s:
            s.progress(400, total=1000, message="loading eu")
            deadline = time.monotonic() + 60
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
            s.progress(1000, total=1000)
            s.artifact("summary", {"rows": 1000, "rejected": 3})


def timeout() -> str:
    with (
        flow.start("nightly", tenant="umbrella", end_on_exit=False, timeout=0.2) as fid,
        step.start("export"),
    ):
        pass
    return fid


def options() -> dict[str, str]:
    """Steps with options: a step retried twice, an isolated failure, a sync step timed out."""
    ids: dict[str, str] = {}
    calls: list[int] = []

    @step.start("fetch_rates", retries=2, retry_on=(TimeoutError,), currency="EUR")
    def fetch_rates() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError(f"rates service slow #{len(calls)}")

    with flow.start("pricing", tenant="acme-corp") as fid:
        ids["retried"] = fid
        fetch_rates()
        with step.start("enrich", raise_on_error=False):
            raise ConnectionError("geo service down")
    with flow.start("report", tenant="acme-corp") as fid:
        ids["step_timed_out"] = fid
        with step.start("crunch", timeout=0.01):
            time.sleep(0.05)
    return ids


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    command = argv[0]
    if command == "demo":
        print(json.dumps(demo()))
    elif command == "many":
        many(int(argv[1]), argv[2])
    elif command == "steps":
        steps(int(argv[1]))
    elif command == "fill":
        fill(int(argv[1]))
    elif command == "phases":
        phases(int(argv[1]), argv[2])
    elif command == "start_remote":
        print(json.dumps(start_remote()))
    elif command == "finish_remote":
        finish_remote(json.loads(argv[1]))
    elif command == "hold":
        hold(argv[1], float(argv[2]) if len(argv) > 2 else None)
    elif command == "options":
        print(json.dumps(options()))
    elif command == "hold_progress":
        hold_progress(argv[1])
    elif command == "timeout":
        print(json.dumps({"flow_id": timeout()}))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
