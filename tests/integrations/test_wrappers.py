"""The wrappers themselves: idempotent, undone by unwrap_*, and a clear hint when an extra is
missing. In-process, with real apps, clients and a real broker; spans read from the collector.
"""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
import uuid
from collections.abc import Iterator

import httpx
import pytest
import requests
from celery import Celery
from fastapi import FastAPI
from flask import Flask

from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow
from dashfrog_sdk.integrations import (
    unwrap_celery,
    unwrap_fastapi,
    unwrap_flask,
    unwrap_httpx,
    unwrap_requests,
    with_celery,
    with_fastapi,
    with_flask,
    with_httpx,
    with_requests,
)
from dashfrog_sdk.propagation import parse_header
from tests.integrations.apps.tasks import make_app
from tests.integrations.conftest import PYTHON, REDIS, ROOT, Proxy, service_of, unique
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan


def spans_with(receiver: OtlpReceiver, service: str, marker: str) -> list[ReceivedSpan]:
    return [s for s in receiver.spans if service_of(s) == service and marker in str(s.attributes)]


def wait_marker(receiver: OtlpReceiver, service: str, marker: str) -> list[ReceivedSpan]:
    return receiver.wait_for_spans(
        lambda s: service_of(s) == service and marker in str(s.attributes), timeout=30
    )


def test_fastapi_wrapper(service_a: str, receiver: OtlpReceiver) -> None:
    app = FastAPI()

    @app.get("/ping/{marker}")
    async def ping(marker: str) -> dict[str, str]:
        return {"marker": marker}

    async def call(marker: str) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            (await client.get(f"/ping/{marker}")).raise_for_status()

    assert with_fastapi(app) is app and with_fastapi(app) is app  # twice: instrumented once
    asyncio.run(call(first := uuid.uuid4().hex))
    assert [s.kind for s in wait_marker(receiver, service_a, first)] == ["SERVER"]
    with pytest.raises(ValueError, match=r"trust_incoming=True.*unwrap_fastapi"):
        with_fastapi(app, trust_incoming=False)
    unwrap_fastapi(app)
    asyncio.run(call(untraced := uuid.uuid4().hex))
    with_fastapi(app, trust_incoming=False)  # allowed again after unwrap
    asyncio.run(call(last := uuid.uuid4().hex))
    wait_marker(receiver, service_a, last)  # exported after `untraced` would have been
    assert spans_with(receiver, service_a, untraced) == []
    unwrap_fastapi(app)
    unwrap_fastapi(app)  # a no-op when not wrapped


def test_flask_wrapper(service_a: str, receiver: OtlpReceiver) -> None:
    def make() -> Flask:
        app = Flask(__name__)

        @app.get("/ping/<marker>")
        def ping(marker: str) -> dict[str, str]:
            return {"marker": marker}

        return app

    def call(app: Flask, marker: str) -> None:
        assert app.test_client().get(f"/ping/{marker}").status_code == 200

    app = make()
    assert with_flask(app) is app and with_flask(app) is app
    call(app, first := uuid.uuid4().hex)
    assert [s.kind for s in wait_marker(receiver, service_a, first)] == ["SERVER"]
    with pytest.raises(ValueError, match=r"trust_incoming=True.*unwrap_flask"):
        with_flask(app, trust_incoming=False)
    unwrap_flask(app)
    call(app, untraced := uuid.uuid4().hex)
    # Flask refuses new before_request hooks once an app served: a new app for the sentinel.
    call(with_flask(make(), trust_incoming=False), last := uuid.uuid4().hex)
    wait_marker(receiver, service_a, last)
    assert spans_with(receiver, service_a, untraced) == []


def test_client_wrappers(service_a: str, receiver: OtlpReceiver, proxy: Proxy) -> None:
    def call(marker: str) -> None:
        url = f"http://service-b/{marker}"
        requests.get(url, proxies={"http": proxy.url}, timeout=10).raise_for_status()
        with httpx.Client(proxy=proxy.url, timeout=10) as client:
            client.get(url).raise_for_status()

    with_requests()  # service_a did it already: a no-op
    with_httpx()
    call(first := uuid.uuid4().hex)
    spans = receiver.wait_for_spans(
        lambda s: service_of(s) == service_a and first in str(s.attributes), count=2, timeout=30
    )
    assert sorted(s.scope.rsplit(".", 1)[-1] for s in spans) == ["httpx", "requests"]
    unwrap_requests()
    unwrap_httpx()
    try:
        call(untraced := uuid.uuid4().hex)
        assert "traceparent" not in proxy.seen[f"http://service-b/{untraced}"]
    finally:
        with_requests()
        with_httpx()
    call(last := uuid.uuid4().hex)
    receiver.wait_for_spans(
        lambda s: service_of(s) == service_a and last in str(s.attributes), count=2, timeout=30
    )
    assert spans_with(receiver, service_a, untraced) == []


def test_client_wrappers_take_over_a_plain_instrumentation(service_a: str, proxy: Proxy) -> None:
    """Clients instrumented without our hooks (e.g. by opentelemetry-instrument) carry no flow
    at all, since no destination is known; with_requests()/with_httpx() put the hooks in."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    def sent(marker: str) -> dict[str, dict[str, str]]:
        with flow.start("order_processing", tenant="acme"):
            url = f"http://billing.partner.example/{marker}"
            requests.get(url + "-requests", proxies={"http": proxy.url}, timeout=10)
            with httpx.Client(proxy=proxy.url, timeout=10) as client:
                client.get(url + "-httpx")
        return {
            client: parse_header(proxy.seen[f"{url}-{client}"].get("baggage", ""))
            for client in ("requests", "httpx")
        }

    unwrap_requests()
    unwrap_httpx()
    try:
        RequestsInstrumentor().instrument()
        HTTPXClientInstrumentor().instrument()
        assert all(c.FLOW_ID not in bag for bag in sent(uuid.uuid4().hex).values())
    finally:
        with_requests()
        with_httpx()
    assert all(c.FLOW_ID in bag for bag in sent(uuid.uuid4().hex).values())


@pytest.fixture
def producer() -> Iterator[Celery]:
    queue = unique("dashfrog-test")
    app = make_app(REDIS, queue)  # calls with_celery(app)
    yield app
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)
    app.close()


@pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")
def test_celery_wrapper(service_a: str, receiver: OtlpReceiver, producer: Celery) -> None:
    app = producer
    assert with_celery(app) is app  # twice: instrumented once
    first = app.tasks["tests.finish"].apply_async().id  # type: ignore[attr-defined]
    spans = wait_marker(receiver, service_a, first)
    assert [s.kind for s in spans] == ["PRODUCER"]
    with pytest.raises(TypeError, match="celery.Celery"):
        with_celery(object())  # type: ignore[arg-type]
    unwrap_celery()
    try:
        untraced = app.tasks["tests.finish"].apply_async().id  # type: ignore[attr-defined]
    finally:
        with_celery(app)
    last = app.tasks["tests.finish"].apply_async().id  # type: ignore[attr-defined]
    wait_marker(receiver, service_a, last)
    assert spans_with(receiver, service_a, untraced) == []


def test_missing_extras_say_what_to_install() -> None:
    """Each wrapper, with its framework not importable, names the extra to install."""
    script = textwrap.dedent(
        """
        import sys
        import dashfrog_sdk.integrations as integrations
        for extra, module, arg in [
            ("fastapi", "fastapi", (None,)), ("flask", "flask", (None,)),
            ("celery", "celery", (None,)),
            ("requests", "opentelemetry.instrumentation.requests", ()),
            ("httpx", "opentelemetry.instrumentation.httpx", ()),
        ]:
            sys.modules[module] = None  # what Python does for a module that is not installed
            try:
                getattr(integrations, "with_" + extra)(*arg)
            except ImportError as exc:
                assert f"pip install 'dashfrog-sdk[{extra}]'" in str(exc), exc
                print("ok", extra)
        """
    )
    out = subprocess.run(
        [PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.split() == [
        "ok",
        "fastapi",
        "ok",
        "flask",
        "ok",
        "celery",
        "ok",
        "requests",
        "ok",
        "httpx",
    ], out.stderr
