"""Fixtures for the viewer's tests: a store filled by real flows from real processes (two
services), a real `dashfrog ui` server process on loopback, and a real headless Chromium.

Browser tests are marked ``browser``; without /usr/bin/chromium they are skipped with the
reason, except in CI (``CI`` set), where .ci/run installs Chromium and its absence fails them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, clean_env
from tests.support.procs import ManagedProcess, free_port, wait_until

UIAPP = Path(__file__).with_name("uiapp.py")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / ".pytest-artifacts" / "ui"
LINK_KEY = "test-link-key-0123456789abcdef"
TOKEN = "test-token-0123456789abcdef"
TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"


def app_env(store: str | os.PathLike[str], service: str) -> dict[str, str]:
    return clean_env(
        DASHFROG_STORE=os.fspath(store), DASHFROG_CONSOLE="off", OTEL_SERVICE_NAME=service
    )


def run_app(store: str | os.PathLike[str], service: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(UIAPP), *args],
        env=app_env(store, service),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@dataclass
class Filled:
    """A store with the flows of uiapp.py's api + billing services: a SQLite file, or a
    ClickHouse database (chDB behind a ClickHouse HTTP endpoint) fed from their OTLP export."""

    path: Path  # the SQLite file (the writers' store; unused by the ClickHouse viewer)
    ids: dict[str, Any] = field(default_factory=dict)
    location: str = ""  # what `dashfrog ui --store` is given
    clickhouse: ClickHouse | None = None

    def __post_init__(self) -> None:
        self.location = self.location or str(self.path)

    def writer_env(self, service: str) -> dict[str, str]:
        """The environment of a process writing flows into this store."""
        if self.clickhouse is None:
            return app_env(self.path, service)
        return {**app_env("off", service), **self.clickhouse.otlp_env}

    @property
    def ok(self) -> str:
        return str(self.ids["handoffs"]["acme_ok"]["flow_id"])

    @property
    def failed(self) -> str:
        return str(self.ids["handoffs"]["globex_failed"]["flow_id"])


def fill(path: Path) -> Filled:
    ids = json.loads(run_app(path, "api", "api"))
    run_app(path, "billing", "billing", json.dumps(ids["handoffs"]))
    return Filled(path, ids)


def clickhouse_missing() -> str | None:
    """Why the ClickHouse backend cannot be tested here, or None."""
    for module in ("dashfrog_sdk.clickhouse", "chdb", "tests.support.clickhouse"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{module} is not installed on this branch"
    return None


class ClickHouse:
    """chDB (the real ClickHouse engine) behind a ClickHouse HTTP endpoint process, with one
    database holding the exporter's tables and the flow rollup; OTLP from the writers arrives
    at a receiver and is inserted as the collector's clickhouse exporter would (a pump thread,
    so flows running now reach it as they go)."""

    def __init__(self, directory: Path) -> None:
        from dashfrog_sdk.clickhouse.connection import HttpTransport, parse_url
        from tests.support import clickhouse as ch
        from tests.support.otlp_receiver import OtlpReceiver

        self._ch = ch
        self.proc, self.port = ch.endpoint(str(directory))
        self.proc.start()
        ch.wait_ready(self.proc, self.port)
        base = f"clickhouse://127.0.0.1:{self.port}/default"
        self.db = ch.new_database(str(directory), transport=HttpTransport(parse_url(base)))
        self.url = f"clickhouse://127.0.0.1:{self.port}/{self.db.database}"
        self.receiver = OtlpReceiver().start()
        self.otlp_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
        }
        self._done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pump = threading.Thread(target=self._run, name="otlp-to-clickhouse", daemon=True)
        self._pump.start()

    def load(self) -> int:
        """Insert what arrived since the last call; returns how many requests."""
        with self._lock:
            requests = list(self.receiver.requests)[self._done :]
            for signal, message in requests:
                if signal == "spans":
                    self.db.insert("otel_traces", self._ch.trace_rows(message))
                elif signal == "logs":
                    self.db.insert("otel_logs", self._ch.log_rows(message))
            self._done += len(requests)
            return len(requests)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.load()

    def close(self) -> None:
        self._stop.set()
        self._pump.join(10)
        self.receiver.stop()
        self.proc.stop()


def fill_clickhouse(path: Path, clickhouse: ClickHouse) -> Filled:
    filled = Filled(path, location=clickhouse.url, clickhouse=clickhouse)
    filled.ids = json.loads(_run(filled.writer_env("api"), "api"))
    _run(filled.writer_env("billing"), "billing", json.dumps(filled.ids["handoffs"]))
    clickhouse.load()
    assert not clickhouse.receiver.errors
    return filled


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(UIAPP), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="session")
def sqlite_filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return fill(tmp_path_factory.mktemp("ui") / "flows.db")


@pytest.fixture(scope="session", params=["sqlite", "clickhouse"])
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Filled]:
    """The same real flows on each backend: every test using it runs on both."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_filled")
        return
    missing = clickhouse_missing()
    if missing is not None:
        pytest.skip(f"ClickHouse backend: {missing}")
    clickhouse = ClickHouse(tmp_path_factory.mktemp("chdb"))
    try:
        yield fill_clickhouse(tmp_path_factory.mktemp("ui-ch") / "unused.db", clickhouse)
    finally:
        clickhouse.close()


class Viewer:
    """A `dashfrog ui` server process."""

    def __init__(
        self, store: Path, *, env: dict[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.port = free_port()
        self.host = host
        self.url = f"http://{host}:{self.port}"
        self.proc = ManagedProcess(
            [
                sys.executable,
                "-m",
                "dashfrog_sdk.cli",
                "ui",
                "--store",
                str(store),
                "--host",
                host,
                "--port",
                str(self.port),
            ],
            env=clean_env(
                DASHFROG_UI_LINK_KEY=LINK_KEY, DASHFROG_UI_TRACE_URL=TRACE_URL, **(env or {})
            ),
            inherit_env=False,
            cwd=ROOT,
            name="dashfrog-ui",
        )

    def start(self) -> Viewer:
        self.proc.start()

        def up() -> bool:
            if not self.proc.running:
                raise AssertionError(f"dashfrog ui exited:\n{self.proc.log_text()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(
            up, timeout=30, message=lambda: f"dashfrog ui did not answer:\n{self.proc.log_text()}"
        )
        return self

    def stop(self) -> None:
        self.proc.stop()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)


@pytest.fixture(scope="session")
def viewer(filled: Filled) -> Iterator[Viewer]:
    v = Viewer(filled.location).start()
    try:
        yield v
    finally:
        v.stop()


# -- the browser ----------------------------------------------------------------------------------


# Module scope: Playwright's sync API keeps its event loop marked running in this thread while
# it is open, so any later test calling asyncio.run() (the async HTTP clients') would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """A browser page that records script errors and dialogs (a hostile string that ran)."""

    def __init__(self, browser: Any, name: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.name = name
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.csp: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self._console)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.csp.append(text)
        elif message.type == "error":
            self.errors.append(text)

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    p = Page(browser, request.node.name.replace("[", "-").replace("]", ""))
    try:
        yield p
    finally:
        p.close()
