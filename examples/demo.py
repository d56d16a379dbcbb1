"""`make demo`: customer flows on the embedded default (console + local flow store, no collector).

Three tenants place orders; one card is declined (a failed step fails its flow), a fraud check
is optional, an import runs a child flow, and one order is handed to a background "worker"
thread that ends the flow later with `flow.end()`, as a Celery worker would. At the end it
prints the `dashfrog` commands that show what just happened.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from opentelemetry import context as otel_context

import dashfrog_sdk
from dashfrog_sdk import flow, step

log = logging.getLogger("demo")


class CardDeclined(Exception):
    pass


def place_order(tenant: str, amount: float, *, decline: bool = False) -> str:
    with flow.start("order_processing", tenant=tenant, region="eu", channel="web") as flow_id:
        with step.start("validate_order", amount=amount):
            time.sleep(0.01)
        try:
            with step.start("fraud_check", optional=True):
                if amount > 500:
                    raise TimeoutError("fraud service slow")
        except TimeoutError:
            log.warning("fraud check skipped for %s", tenant)
        try:
            with step.start("charge_payment", amount=amount):
                time.sleep(0.02)
                if decline:
                    log.error("payment failed for %s", tenant)  # inside the step: nested under it
                    raise CardDeclined("card declined by issuer")
                flow.event("payment_authorised", amount=amount)
        except CardDeclined:
            return flow_id
        with step.start("ship"):
            time.sleep(0.01)
    return flow_id


def data_import(tenant: str) -> str:
    with flow.start("data_import", tenant=tenant, source="s3") as flow_id:
        with step.start("download"):
            time.sleep(0.01)
        with flow.start("enrich_records", tenant=tenant):  # a child flow
            with step.start("geocode"):
                time.sleep(0.01)
        with step.start("load") as s:  # says how far it is, and what it produced
            rows = 500
            for i in range(rows):
                s.progress(i + 1, total=rows)
            s.artifact("summary", {"rows": rows, "rejected": 3})
            time.sleep(0.01)
    return flow_id


def async_order(tenant: str) -> tuple[str, threading.Thread]:
    """The API half ends at once; a worker thread finishes the flow later."""
    with flow.start("async_order", tenant=tenant, end_on_exit=False, region="us") as flow_id:
        with step.start("accept_order"):
            time.sleep(0.005)
        handed_off = otel_context.get_current()  # what a task message would carry

    def worker() -> None:
        token = otel_context.attach(handed_off)
        try:
            with step.start("pack"):
                time.sleep(0.02)
            with step.start("dispatch"):
                time.sleep(0.01)
            flow.end()
        finally:
            otel_context.detach(token)

    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    return flow_id, thread


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    store = os.environ.get("DASHFROG_STORE", ".dashfrog/flows.db")
    dashfrog_sdk.setup(service_name="demo-shop", store=store, console=True)
    ok = place_order("acme-corp", 42.0)
    place_order("globex", 900.0)
    failed = place_order("initech", 120.0, decline=True)
    imported = data_import("acme-corp")
    handed, worker = async_order("globex")
    worker.join()
    dashfrog_sdk.flush()
    dashfrog = os.path.relpath(os.path.join(os.path.dirname(sys.executable), "dashfrog"))
    print(
        "\nThe flows above are in the local store. Look at them with:\n"
        f"  {dashfrog} flows --store {store}\n"
        f"  {dashfrog} flows --tenant initech --status failed --store {store}\n"
        f"  {dashfrog} flow {failed} --store {store}\n"
        f"  {dashfrog} flow {ok} --mermaid --store {store}\n"
        f"  {dashfrog} flow {ok} --flowchart --store {store}\n"
        f"  {dashfrog} flow {imported} --markdown --store {store}\n"
        f"  {dashfrog} flow {handed} --store {store}\n"
        f"  {dashfrog} flow {failed} --logs --store {store}\n"
        f"  {dashfrog} stats --store {store}\n"
        "And in the browser (then open http://127.0.0.1:8080):\n"
        f"  {dashfrog} ui --store {store}"
    )


if __name__ == "__main__":
    main()
