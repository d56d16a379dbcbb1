"""Every example runs as documented (each in its own interpreter, as a user would run it)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

from dashfrog_sdk.store import FlowDetail, FlowStore
from tests.support import ROOT, clean_env
from tests.support.procs import ManagedProcess, free_port, wait_until

EXAMPLES = ROOT / "examples"
CLEAN_ENV = clean_env()


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env={**CLEAN_ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_decorators(tmp_path: Path) -> None:
    proc = run([sys.executable, str(EXAMPLES / "decorators.py")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[24, 240]" in proc.stdout.splitlines()
    assert proc.stdout.count("✔ flow checkout  completed") == 2
    assert "✘ step notify  failed" in proc.stdout  # optional: the flow still completed


def test_testing_your_flows(tmp_path: Path) -> None:
    proc = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "testing_your_flows.py"),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    assert not (tmp_path / ".dashfrog").exists()  # the capture writes no files


def test_demo_and_every_command_it_prints(tmp_path: Path) -> None:
    """`make demo` runs examples/demo.py; each `dashfrog` command it prints must work."""
    store = tmp_path / "flows.db"
    proc = run([sys.executable, str(EXAMPLES / "demo.py")], ROOT, DASHFROG_STORE=str(store))
    assert proc.returncode == 0, proc.stderr
    assert "✘ flow order_processing  failed" in proc.stdout
    assert "✔ flow async_order  ended completed" in proc.stdout
    commands = [
        line.strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith(".venv/bin/dashfrog")
        or line.strip().startswith(str(Path(sys.executable).parent / "dashfrog"))
        or "/dashfrog " in line
    ]
    assert len(commands) == 10, proc.stdout
    assert shlex.split(commands[-1])[1] == "ui", "the demo ends with the viewer's command"
    outputs = {}
    for command in commands:
        args = shlex.split(command)
        args[0] = str(Path(sys.executable).parent / "dashfrog")
        if args[1] == "ui":
            outputs["ui"] = serve_once(args, "/flows")
            continue
        result = run(args, ROOT)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.strip(), command
        outputs[" ".join(args[1:3])] = result.stdout
    joined = "\n".join(outputs.values())
    assert "sequenceDiagram" in joined and "flowchart" in joined
    assert "charge_payment" in joined and "CardDeclined" in joined
    assert outputs["ui"].count('class="flow-row') == 6, outputs["ui"]


def serve_once(args: list[str], path: str) -> str:
    """Run a printed `dashfrog ui` command (on a free port), fetch one page, stop it."""
    port = free_port()
    with ManagedProcess([*args, "--port", str(port)], env=clean_env(), cwd=ROOT) as viewer:
        url = f"http://127.0.0.1:{port}{path}"

        def page() -> str:
            assert viewer.running, viewer.log_text()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return str(response.read().decode())
            except OSError:
                return ""

        return wait_until(page, timeout=30, message=lambda: viewer.log_text())


def test_metrics(tmp_path: Path) -> None:
    proc = run([sys.executable, str(EXAMPLES / "metrics.py")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()

    def value(prefix: str) -> str:
        found = [line for line in lines if line.startswith(prefix)]
        assert found, (prefix, proc.stdout)
        return found[0].split()[-1]

    assert (
        value(
            "orders                     dashfrog.flow.name=checkout, dashfrog.tenant=acme-corp, region=eu"
        )
        == "5"
    )
    assert (
        value(
            "dashfrog.flows.ended       dashfrog.flow.name=checkout, dashfrog.flow.status=completed, dashfrog.tenant=globex"
        )
        == "1"
    )
    assert value("queue.depth                dashfrog.tenant=globex") == "11"


def _only_flow(store: Path) -> FlowDetail:
    with FlowStore(store) as flows:
        found = flows.flows()
        assert len(found) == 1, found
        return flows.flow(found[0].id)


def test_two_services(tmp_path: Path) -> None:
    store = tmp_path / "flows.db"
    proc = run(
        [sys.executable, str(EXAMPLES / "two_services" / "run.py")],
        tmp_path,
        DASHFROG_STORE=str(store),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    detail = _only_flow(store)
    assert detail.status == "completed" and detail.tenant == "customer-123"
    by_name = {s.name: s for s in detail.steps}
    assert set(by_name) == {"reserve", "charge", "reserve_stock", "process_payment"}
    assert by_name["reserve_stock"].service == "stock"  # Flask, joined over httpx
    assert by_name["process_payment"].service == "payments"  # FastAPI, joined over requests
    assert by_name["charge"].service == "shop"


def test_async_tasks(tmp_path: Path) -> None:
    store = tmp_path / "flows.db"
    proc = run(
        [sys.executable, str(EXAMPLES / "async_tasks" / "run.py")],
        tmp_path,
        DASHFROG_STORE=str(store),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ended: completed" in proc.stdout
    detail = _only_flow(store)
    assert detail.status == "completed" and detail.name == "data_import"
    services = {s.name: s.service for s in detail.steps}
    assert services == {
        "accept": "importer-api",
        "parse": "importer-worker",
        "load": "importer-worker",
    }
