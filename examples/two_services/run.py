"""Run the three services on this machine and send one order through them.

    python examples/two_services/run.py

B (FastAPI under uvicorn) and C (Flask under werkzeug) run as separate processes with their own
OTEL_SERVICE_NAME; all three write to one local flow store, so `dashfrog flow ID` shows the
steps of every service under one flow.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def main() -> None:
    env = {**os.environ, "DASHFROG_STORE": os.environ.get("DASHFROG_STORE", ".dashfrog/flows.db")}
    env["DASHFROG_STORE"] = str(Path(env["DASHFROG_STORE"]).resolve())
    b_port, c_port = free_port(), free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "service_b:app", "--port", str(b_port)]
    services = [
        (
            b_port,
            subprocess.Popen(
                [*uvicorn, "--log-level", "warning"],
                cwd=HERE,
                env={**env, "OTEL_SERVICE_NAME": "payments"},
            ),
        ),
        (
            c_port,
            subprocess.Popen(
                [sys.executable, "service_c.py", "--port", str(c_port)],
                cwd=HERE,
                env={**env, "OTEL_SERVICE_NAME": "stock"},
                stderr=subprocess.DEVNULL,
            ),
        ),
    ]
    try:
        for port, proc in services:
            wait_for(port, proc)
        order = subprocess.run(
            [sys.executable, "service_a.py"],
            cwd=HERE,
            env={
                **env,
                "OTEL_SERVICE_NAME": "shop",
                "PAYMENTS_URL": f"http://127.0.0.1:{b_port}",
                "STOCK_URL": f"http://127.0.0.1:{c_port}",
            },
            capture_output=True,
            text=True,
            check=True,
        )
        print(order.stdout, end="")
    finally:
        for _, proc in services:
            proc.terminate()  # uvicorn and werkzeug flush their spans on SIGTERM
            proc.wait(timeout=15)
    flow_id = re.findall(r"^[0-9a-f]{32}$", order.stdout, re.MULTILINE)[-1]
    print(
        f"\nflow {flow_id} crossed three services:\n"
        f"  dashfrog flow {flow_id} --store {env['DASHFROG_STORE']}\n"
        f"  dashfrog flow {flow_id} --mermaid --store {env['DASHFROG_STORE']}"
    )


if __name__ == "__main__":
    main()
