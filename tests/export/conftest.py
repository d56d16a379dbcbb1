"""Fixtures for the export tests: a real rotel collector, and the application as a subprocess.

Every test that calls `setup()` runs it in a fresh interpreter (OpenTelemetry's global
providers can be set once per process), talking to the collector over loopback.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, clean_env
from tests.support.collector import Protocol, RotelCollector, collector_env

APP = Path(__file__).with_name("app.py")
CLEAN_ENV = clean_env()


def app_env(
    collector: RotelCollector | None, protocol: Protocol = "grpc", **extra: str
) -> dict[str, str]:
    """Environment of an app exporting to `collector`: unique service name, no local outputs,
    2 s export timeout (outage tests wait less), fast batches."""
    env = {**CLEAN_ENV, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    if collector is not None:
        env |= collector_env(collector, protocol)
    env |= {
        "OTEL_SERVICE_NAME": f"svc-{uuid.uuid4().hex[:10]}",
        "DASHFROG_STORE": "off",
        "DASHFROG_CONSOLE": "off",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
    }
    return env | extra


class App:
    """The scripted application (tests/export/app.py) in a subprocess, driven over stdin/stdout."""

    def __init__(self, env: dict[str, str], script: str | None = None) -> None:
        args = [sys.executable, str(APP)] + (["--script", script] if script is not None else [])
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed with the object
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.ready: dict[str, Any] | None = None
        if script is None:
            self.ready = json.loads(self._line(30))

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def _line(self, timeout: float) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"app gave no answer in {timeout}s; stderr:\n{self.stderr}"
            ) from None

    def call(self, op: str, wait_s: float = 60, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self._line(wait_s))
        if "error" in reply:
            raise AssertionError(f"app failed {op}: {reply['error']}; stderr:\n{self.stderr}")
        return reply["result"]

    def output(self) -> list[str]:
        out = []
        while not self._lines.empty():
            out.append(self._lines.get())
        return out

    def exit(self, timeout: float = 60) -> int:
        """Ask the app to return from main (a normal interpreter exit) and wait for it."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"app did not exit in {timeout}s; stderr:\n{self.stderr}"
            ) from None

    @property
    def stderr(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def collector() -> Iterator[RotelCollector]:
    with RotelCollector() as col:
        yield col


@pytest.fixture
def start_app() -> Iterator[Callable[..., App]]:
    """`start_app(env, script=None)`: an App, killed at teardown if it is still running."""
    started: list[App] = []

    def start(env: dict[str, str], script: str | None = None) -> App:
        app = App(env, script)
        started.append(app)
        return app

    yield start
    for app in started:
        app.kill()
