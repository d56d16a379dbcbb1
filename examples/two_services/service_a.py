"""Service A: starts the flow and calls B with requests and C with httpx.

PAYMENTS_URL=http://127.0.0.1:8001 STOCK_URL=http://127.0.0.1:8002 python service_a.py
"""

from __future__ import annotations

import os

import httpx
import requests

from dashfrog_sdk import flow, step, with_httpx, with_requests

with_requests()  # client spans; the flow's baggage goes to internal hosts only
with_httpx()


def place_order(tenant: str, sku: str, amount: float) -> str:
    payments = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:8001")
    stock = os.environ.get("STOCK_URL", "http://127.0.0.1:8002")
    with flow.start("order_processing", tenant=tenant, region="eu") as flow_id:
        with step.start("reserve"):
            httpx.post(f"{stock}/reserve/{sku}", timeout=10).raise_for_status()
        with step.start("charge"):
            paid = requests.post(f"{payments}/pay", json={"amount": amount}, timeout=10)
            paid.raise_for_status()
            assert paid.json()["flow_id"] == flow_id  # B joined the same flow
    return flow_id


if __name__ == "__main__":
    print(place_order("customer-123", "SKU-42", 99.5))
