"""Load generator for the dashfrog demo: posts orders for several tenants at a bounded rate.

    python loadgen.py --base-url http://127.0.0.1:8000 --rate 1        # until stopped
    python loadgen.py --count 20                                        # 20 orders, then exit
    python loadgen.py --healthcheck                                     # container health check

Each order starts one ``order_processing`` flow in the API. The outgoing requests are traced
(``with_requests()``), so Jaeger shows the load generator as the root of every trace.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import requests

from dashfrog_sdk import setup, with_requests

__all__ = ["DEFAULT_TENANTS", "build_order", "main", "run_one_order", "wait_for_api"]

logger = logging.getLogger("demo.loadgen")

DEFAULT_TENANTS = ("acme-corp", "globex", "initech")
REGIONS = ("eu", "us", "apac")
SKUS = ("frog-plush", "lily-pad", "pond-pump", "fly-trap", "tadpole-kit")
DEFAULT_HEARTBEAT = Path(os.environ.get("LOADGEN_HEARTBEAT", "/tmp/dashfrog-loadgen.heartbeat"))
MAX_RATE = 50.0  # orders per second: a demo, not a benchmark


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...

    def json(self) -> Any: ...


class PostClient(Protocol):
    """Anything with ``post(path, json=...)`` and a base URL: FastAPI's ``TestClient``,
    ``httpx.Client(base_url=...)``."""

    def post(self, url: str, *, json: Any) -> _Response: ...


def build_order(tenant: str, rng: random.Random | None = None) -> dict[str, Any]:
    """A random, valid order payload for ``POST /orders``."""
    rng = rng or random.Random()
    items = [
        {"sku": rng.choice(SKUS), "quantity": rng.randint(1, 5)} for _ in range(rng.randint(1, 3))
    ]
    return {
        "tenant": tenant,
        "region": rng.choice(REGIONS),
        "items": items,
        "amount_cents": rng.randint(500, 50_000),
    }


def run_one_order(
    client_or_base_url: str | PostClient,
    tenant: str,
    *,
    rng: random.Random | None = None,
    timeout: float = 10.0,
) -> str:
    """Post one order for ``tenant`` and return the id of the flow the API started.

    ``client_or_base_url`` is a base URL (``http://api:8000``) or a client object with a base
    URL. A rejected order (HTTP 422, a simulated business failure) still returns its flow id:
    the flow exists and ended as failed. Raises ``RuntimeError`` on any other answer.
    """
    payload = build_order(tenant, rng)
    response: _Response
    if isinstance(client_or_base_url, str):
        url = client_or_base_url.rstrip("/") + "/orders"
        response = requests.post(url, json=payload, timeout=timeout)
    else:
        response = client_or_base_url.post("/orders", json=payload)
    try:
        body = response.json()
    except ValueError as err:
        raise RuntimeError(f"POST /orders: HTTP {response.status_code}, body is not JSON") from err
    flow_id = body.get("flow_id") if isinstance(body, dict) else None
    if response.status_code not in (202, 422, 503) or not isinstance(flow_id, str):
        raise RuntimeError(f"POST /orders: unexpected HTTP {response.status_code}: {body!r}")
    return flow_id


def wait_for_api(base_url: str, timeout: float, stop: threading.Event) -> bool:
    """Poll ``GET /healthz`` until it answers 200, ``timeout`` passes, or ``stop`` is set."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while not stop.is_set():
        try:
            if requests.get(base_url.rstrip("/") + "/healthz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() + delay > deadline:
            return False
        stop.wait(delay)
        delay = min(delay * 2, 2.0)
    return False


def check_heartbeat(path: Path, max_age: float) -> int:
    """Exit status for a container health check: 0 if the loop beat within ``max_age`` s."""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        print(f"unhealthy: no heartbeat file {path}", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"unhealthy: last heartbeat {age:.0f}s ago", file=sys.stderr)
        return 1
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--base-url",
        default=os.environ.get("API_URL", "http://127.0.0.1:8000"),
        help="the demo API (default: $API_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("LOADGEN_RATE", "1")),
        help=f"orders per second, at most {MAX_RATE:g} (default: $LOADGEN_RATE or 1)",
    )
    parser.add_argument(
        "--count", type=int, default=0, help="number of orders to send; 0 runs until stopped"
    )
    parser.add_argument(
        "--tenants",
        default=os.environ.get("LOADGEN_TENANTS", ",".join(DEFAULT_TENANTS)),
        help="comma-separated tenant ids",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible load)")
    parser.add_argument(
        "--wait", type=float, default=120.0, help="seconds to wait for the API at start"
    )
    parser.add_argument("--heartbeat", type=Path, default=DEFAULT_HEARTBEAT)
    parser.add_argument(
        "--healthcheck",
        action="store_true",
        help="only check that a running load generator beat recently, then exit",
    )
    parser.add_argument("--max-age", type=float, default=60.0, help="for --healthcheck")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE:g}], got {args.rate}")
    if args.count < 0:
        parser.error(f"--count must be >= 0, got {args.count}")
    args.tenant_list = [t.strip() for t in args.tenants.split(",") if t.strip()]
    if not args.tenant_list:
        parser.error("--tenants must name at least one tenant")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.healthcheck:
        return check_heartbeat(args.heartbeat, args.max_age)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    setup()
    with_requests()
    if not wait_for_api(args.base_url, args.wait, stop):
        logger.error("API at %s not healthy after %.0fs", args.base_url, args.wait)
        return 1 if not stop.is_set() else 0

    rng = random.Random(args.seed)
    interval = 1.0 / args.rate
    outcomes: Counter[str] = Counter()
    sent = 0
    next_at = time.monotonic()
    logger.info("sending orders to %s at %.2f/s for %s", args.base_url, args.rate, args.tenant_list)
    while not stop.is_set() and (args.count == 0 or sent < args.count):
        tenant = rng.choice(args.tenant_list)
        try:
            flow_id = run_one_order(args.base_url, tenant, rng=rng)
            outcomes["sent"] += 1
            logger.debug("tenant=%s flow=%s", tenant, flow_id)
        except (requests.RequestException, RuntimeError) as err:
            outcomes["error"] += 1
            logger.warning("tenant=%s: %s", tenant, err)
        sent += 1
        args.heartbeat.touch()
        if sent % 50 == 0:
            logger.info("%d orders: %s", sent, dict(outcomes))
        next_at = max(next_at + interval, time.monotonic() - interval)  # no catch-up bursts
        stop.wait(max(0.0, next_at - time.monotonic()))
    logger.info("done: %d orders: %s", sent, dict(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
