"""Testing your own flows with `dashfrog_sdk.testing` (run with pytest).

    pytest examples/testing_your_flows.py

The `dashfrog_capture` fixture is registered automatically when dashfrog-sdk is installed; it
captures flows, steps and events in memory (no console, no files).
"""

from __future__ import annotations

import pytest

from dashfrog_sdk import flow, step
from dashfrog_sdk.testing import Capture, capture


class OutOfStock(Exception):
    pass


def fulfil(tenant: str, sku: str, stock: dict[str, int]) -> None:
    with flow.start("fulfilment", tenant=tenant, sku=sku):
        with step.start("reserve"):
            if stock.get(sku, 0) <= 0:
                raise OutOfStock(sku)
            stock[sku] -= 1
        with step.start("ship"):
            pass


def test_fulfilment_completes(dashfrog_capture: Capture) -> None:
    fulfil("acme-corp", "SKU-1", {"SKU-1": 3})
    f = dashfrog_capture.assert_flow(
        "fulfilment", status="completed", tenant="acme-corp", steps=["reserve", "ship"]
    )
    assert f.labels == {"sku": "SKU-1"}


def test_out_of_stock_fails_at_reserve(dashfrog_capture: Capture) -> None:
    with pytest.raises(OutOfStock):
        fulfil("globex", "SKU-2", {})
    f = dashfrog_capture.assert_flow("fulfilment", status="failed", steps=["reserve"])
    assert f.step("reserve").error == "OutOfStock: SKU-2"


def test_without_the_fixture() -> None:
    with capture() as cap:
        fulfil("initech", "SKU-3", {"SKU-3": 1})
    assert [e.name for e in cap.flow("fulfilment").events] == [
        "dashfrog.flow.start",
        "dashfrog.step.start",
        "dashfrog.step.start",
    ]
