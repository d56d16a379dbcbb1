"""Flows and steps as decorators, for sync and async functions.

python examples/decorators.py
"""

from __future__ import annotations

import asyncio
import contextlib

from dashfrog_sdk import flow, step


@step.start("validate")
def validate(order: dict[str, int]) -> None:
    if order["quantity"] <= 0:
        raise ValueError("quantity must be positive")


@step.start("price", currency="EUR")
def price(order: dict[str, int]) -> int:
    return order["quantity"] * 12


@step.start("notify", optional=True)  # a failure here does not fail the flow
async def notify(total: int) -> None:
    await asyncio.sleep(0.01)
    if total > 100:
        raise ConnectionError("mail server unavailable")


@flow.start("checkout", tenant="acme-corp", channel="api")
async def checkout(order: dict[str, int]) -> int:
    validate(order)
    total = price(order)
    with contextlib.suppress(ConnectionError):
        await notify(total)
    return total


async def main() -> list[int]:
    # Each call is its own flow, even when they run concurrently.
    return list(await asyncio.gather(checkout({"quantity": 2}), checkout({"quantity": 20})))


if __name__ == "__main__":
    print(asyncio.run(main()))
