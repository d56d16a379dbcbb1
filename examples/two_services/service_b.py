"""Service B: a FastAPI payment service that joins the caller's flow.

OTEL_SERVICE_NAME=payments uvicorn service_b:app --port 8001
"""

from __future__ import annotations

from fastapi import FastAPI

from dashfrog_sdk import flow, step, with_fastapi

app = with_fastapi(FastAPI(title="payments"))


@app.post("/pay")
def pay(order: dict[str, float]) -> dict[str, str | None]:
    with step.start("process_payment", amount=order.get("amount", 0.0)):
        current = flow.current()  # the caller's flow, joined from the request's baggage
        return {"paid": "yes", "flow_id": current.id if current else None}
