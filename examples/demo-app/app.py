"""FastAPI side of the dashfrog demo: ``POST /orders`` starts an ``order_processing`` flow.

The flow starts here with ``end_on_exit=False``: the API validates the order and reserves
stock, then hands the order to the Celery worker (``tasks.py``), which charges, ships and
ends the flow. One flow id covers both processes; Jaeger shows both halves, every span
labelled with ``dashfrog.flow.id`` and ``dashfrog.tenant``.

Run it::

    uvicorn app:app --host 0.0.0.0 --port 8000

Importing this module creates the FastAPI app and the metric instruments; telemetry is set up
when the app starts (its lifespan), not at import.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response, status
from kombu.exceptions import OperationalError
from pydantic import BaseModel, Field
from tasks import DemoError, maybe_fail, process_order, simulate_work

from dashfrog_sdk import flow, metrics, setup, step, with_fastapi

__all__ = ["OrderItem", "OrderRequest", "OrderResponse", "app", "create_order"]

logger = logging.getLogger("demo.api")

FLOW_NAME = "order_processing"


class InvalidOrder(DemoError):
    pass


class OutOfStock(DemoError):
    pass


class OrderItem(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=100)


class OrderRequest(BaseModel):
    tenant: str = Field(min_length=1, max_length=64, examples=["acme-corp"])
    region: str = Field(default="eu", min_length=1, max_length=32, examples=["eu"])
    items: list[OrderItem] = Field(min_length=1, max_length=50)
    amount_cents: int = Field(ge=0)


class OrderResponse(BaseModel):
    flow_id: str
    order_id: str
    status: str  # "accepted" (handed to the worker), "rejected" or "unavailable"
    error: str | None = None


orders_total = metrics.Counter(
    "orders_total",
    labels=["region"],
    unit="1",
    description="Orders received by the demo API",
)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    setup()  # optional (the first flow would do it); here so that export starts at boot
    yield


app = FastAPI(title="dashfrog demo shop", lifespan=lifespan)
with_fastapi(app)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def validate_order(order: OrderRequest) -> None:
    simulate_work()
    if any(item.quantity > 20 for item in order.items):
        raise InvalidOrder("quantity above 20 needs a sales contract")
    maybe_fail(InvalidOrder, "shipping address failed validation")


def reserve_stock(order: OrderRequest) -> None:
    simulate_work()
    maybe_fail(OutOfStock, f"{order.items[0].sku} is out of stock")


@app.post("/orders", status_code=status.HTTP_202_ACCEPTED)
def create_order(order: OrderRequest, response: Response) -> OrderResponse:
    """Validate and reserve here, then let the worker charge, ship and end the flow."""
    order_id = uuid.uuid4().hex[:12]
    with flow.start(
        FLOW_NAME, tenant=order.tenant, end_on_exit=False, region=order.region
    ) as flow_id:
        orders_total.add(1, tenant=order.tenant, region=order.region)
        try:
            with step.start("validate_order", order_id=order_id, items=len(order.items)):
                validate_order(order)
            with step.start("reserve_stock", order_id=order_id):
                reserve_stock(order)
        except DemoError as err:
            flow.fail(err)
            response.status_code = 422  # Unprocessable Content
            return OrderResponse(
                flow_id=flow_id, order_id=order_id, status="rejected", error=str(err)
            )

        try:
            process_order.apply_async(
                kwargs={
                    "order_id": order_id,
                    "amount_cents": order.amount_cents,
                    "items": len(order.items),
                }
            )
        except OperationalError as err:  # broker down: the flow fails, the API answers
            logger.warning("order %s: could not enqueue: %s", order_id, err)
            flow.fail(err)
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return OrderResponse(
                flow_id=flow_id, order_id=order_id, status="unavailable", error=str(err)
            )

    logger.debug("order %s accepted (flow %s)", order_id, flow_id)
    return OrderResponse(flow_id=flow_id, order_id=order_id, status="accepted")
