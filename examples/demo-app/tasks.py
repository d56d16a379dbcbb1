"""Celery side of the dashfrog demo: the worker half of every ``order_processing`` flow.

The API (``app.py``) starts the flow with ``end_on_exit=False`` and enqueues
``demo.process_order``. The flow context (id, tenant, labels) travels to this worker in W3C
baggage; the task runs its steps under the same flow id and closes the flow with
``flow.end()`` or ``flow.fail(err)``.

Run a worker::

    REDIS_URL=redis://127.0.0.1:6379/0 celery -A tasks worker --loglevel=INFO

Environment:

- ``REDIS_URL``: broker URL (default ``redis://127.0.0.1:6379/0``).
- ``DEMO_FAILURE_RATE``: probability that a step fails (default ``0.1``).
- ``DEMO_MAX_STEP_DELAY_MS``: upper bound of the simulated work per step (default ``100``).
- ``DEMO_CELERY_EAGER``: ``1`` runs tasks in the calling process (tests, no broker needed).

Importing this module creates the Celery app and the metric instruments; it opens no
connection and installs no OpenTelemetry provider.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from dashfrog_sdk import flow, metrics, setup, step, with_celery

__all__ = [
    "PROCESS_ORDER_TASK",
    "REDIS_URL",
    "DemoError",
    "celery_app",
    "failure_rate",
    "maybe_fail",
    "process_order",
    "simulate_work",
]

logger = logging.getLogger("demo.worker")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PROCESS_ORDER_TASK = "demo.process_order"

_rng = random.Random()


class DemoError(Exception):
    """A simulated business failure (declined card, carrier down, ...)."""


class PaymentDeclined(DemoError):
    pass


class ShipmentFailed(DemoError):
    pass


class FraudServiceTimeout(DemoError):
    pass


def failure_rate() -> float:
    """The probability that one step fails, from ``DEMO_FAILURE_RATE`` (read on every call)."""
    raw = os.environ.get("DEMO_FAILURE_RATE", "0.1")
    try:
        rate = float(raw)
    except ValueError:
        logger.warning("DEMO_FAILURE_RATE=%r is not a number; using 0.1", raw)
        return 0.1
    return min(max(rate, 0.0), 1.0)


def simulate_work() -> None:
    """Sleep a little, so that steps have a visible duration in Jaeger."""
    raw = os.environ.get("DEMO_MAX_STEP_DELAY_MS", "100")
    try:
        max_ms = max(float(raw), 0.0)
    except ValueError:
        max_ms = 100.0
    if max_ms > 0:
        time.sleep(_rng.uniform(max_ms / 10, max_ms) / 1000)


def maybe_fail(error: type[DemoError], message: str) -> None:
    """Raise ``error(message)`` with probability :func:`failure_rate`."""
    if _rng.random() < failure_rate():
        raise error(message)


celery_app = Celery("dashfrog_demo", broker=REDIS_URL)
celery_app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_always_eager=os.environ.get("DEMO_CELERY_EAGER", "") == "1",
)
with_celery(celery_app)

payments_total = metrics.Counter(
    "payments_total",
    labels=["region", "outcome"],
    unit="1",
    description="Payment attempts made by the demo worker, by outcome",
)
shipments_total = metrics.Counter(
    "shipments_total",
    labels=["region", "outcome"],
    unit="1",
    description="Shipments started by the demo worker, by outcome",
)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _setup_telemetry(**_: Any) -> None:
    # Each prefork child gets its own exporters and background threads (idempotent).
    setup()


@celery_app.task(name=PROCESS_ORDER_TASK)  # type: ignore[untyped-decorator]
def process_order(order_id: str, amount_cents: int, items: int) -> str:
    """Charge and ship one order, then close its flow. Returns the flow's final status."""
    current = flow.current()
    if current is None:
        # The flow context did not arrive (e.g. dropped baggage): the work still runs.
        logger.warning("order %s: no flow context in the task; running untracked", order_id)
        tenant, region = "unknown", "unknown"
    else:
        tenant, region = current.tenant, str(current.labels.get("region", "unknown"))

    try:
        # An optional step: its failure is recorded but does not fail the flow.
        try:
            with step.start("fraud_check", optional=True, order_id=order_id):
                simulate_work()
                maybe_fail(FraudServiceTimeout, "fraud service timed out")
        except FraudServiceTimeout:
            logger.info("order %s: fraud check skipped (service timeout)", order_id)

        with step.start("charge_payment", order_id=order_id, amount_cents=amount_cents):
            simulate_work()
            if _rng.random() < failure_rate():
                flow.event("payment_retried", attempt=2, order_id=order_id)
                simulate_work()
            try:
                maybe_fail(PaymentDeclined, "card declined by issuer")
            except PaymentDeclined:
                payments_total.add(1, tenant=tenant, region=region, outcome="declined")
                raise
            payments_total.add(1, tenant=tenant, region=region, outcome="charged")

        with step.start("ship", order_id=order_id, items=items):
            simulate_work()
            try:
                maybe_fail(ShipmentFailed, "carrier API unavailable")
            except ShipmentFailed:
                shipments_total.add(1, tenant=tenant, region=region, outcome="failed")
                raise
            shipments_total.add(1, tenant=tenant, region=region, outcome="shipped")
    except DemoError as err:
        logger.info("order %s failed: %s", order_id, err)
        flow.fail(err)
        return "failed"

    flow.end()
    return "completed"
