"""Run the API and a Celery worker (Redis broker) on this machine, and import once.

    python examples/async_tasks/run.py     # needs Redis on 127.0.0.1:6379

Both processes write to one local flow store; the script waits until the worker has ended the
flow, then prints it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from dashfrog_sdk.store import FlowNotFoundError, FlowStore, StoreError

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout}s")


def main() -> None:
    store = Path(os.environ.get("DASHFROG_STORE", ".dashfrog/flows.db")).resolve()
    env = {
        **os.environ,
        "DASHFROG_STORE": str(store),
        "IMPORT_QUEUE": f"imports-{uuid.uuid4().hex[:8]}",
    }
    port = free_port()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "warning",
            "--queues",
            env["IMPORT_QUEUE"],
        ],
        cwd=HERE,
        env={**env, "OTEL_SERVICE_NAME": "importer-worker"},
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api:app", "--port", str(port), "--log-level", "warning"],
        cwd=HERE,
        env={**env, "OTEL_SERVICE_NAME": "importer-api"},
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def api_up() -> bool:
            try:
                return httpx.get(f"{base}/docs", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(api_up, 30, "the API start")
        flow_id = httpx.post(
            f"{base}/imports", params={"tenant": "acme-corp", "rows": 250}, timeout=10
        ).json()["flow_id"]
        print(f"API answered with flow {flow_id}; waiting for the worker to end it")

        def ended() -> str | None:
            try:
                with FlowStore(store) as flows:
                    status = flows.flow(flow_id).status
            except (FlowNotFoundError, StoreError):
                return None
            return status if status not in ("running",) else None

        print(f"flow {flow_id} ended: {wait_until(ended, 60, 'the flow end')}")
        print(f"  dashfrog flow {flow_id} --store {store}")
    finally:
        for proc in (api, worker):
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
