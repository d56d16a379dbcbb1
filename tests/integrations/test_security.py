"""Propagation rules under attack, end to end: real clients, real servers, all on loopback.

Service A (this process) allows only `127.0.0.1` (`DASHFROG_PROPAGATE_TO=127.0.0.1`), signs,
and runs the jaeger and ottrace propagators next to W3C baggage. Another loopback address
(`127.0.0.2`) and the name `localhost` stand in for hosts outside: the same machine, but not on
the allowlist. Service B is a real uvicorn/werkzeug subprocess configured the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider

import dashfrog_sdk
from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, step
from dashfrog_sdk.integrations import unwrap_httpx, unwrap_requests, with_httpx, with_requests
from dashfrog_sdk.propagation import encode_member, parse_header, sign
from tests.integrations.conftest import KEY, PYTHON, ROOT, TENANT, service_env, unique
from tests.support.collector import RotelCollector
from tests.support.procs import ManagedProcess, free_port, wait_for_port

PROPAGATORS = "tracecontext,baggage,jaeger,ottrace"
CLIENTS = ["requests", "requests-session", "httpx", "httpx-async"]


class Recorder(ThreadingHTTPServer):
    """Records the headers of every request; `/hop?to=URL` answers 302 to URL."""

    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), RecorderHandler)
        self.seen: dict[str, dict[str, str]] = {}  # path (with query) -> request headers
        self.host = host
        self.url = f"http://{host}:{self.server_address[1]}"


class RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.seen[self.path] = {k.lower(): v for k, v in self.headers.items()}
        target = parse_qs(urlsplit(self.path).query).get("to")
        body = json.dumps({"ok": True}).encode()
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target[0])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def inside() -> Iterator[Recorder]:
    yield from _serve("127.0.0.1")


@pytest.fixture(scope="module")
def outside() -> Iterator[Recorder]:
    yield from _serve("127.0.0.2")


def _serve(host: str) -> Iterator[Recorder]:
    server = Recorder(host)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def service_a() -> Iterator[None]:
    """This process: allows 127.0.0.1 only, signs, and also runs jaeger and ottrace."""
    dashfrog_sdk.shutdown()
    saved = os.environ.get("OTEL_PROPAGATORS")
    os.environ["OTEL_PROPAGATORS"] = PROPAGATORS
    tracer_provider, logger_provider = TracerProvider(), LoggerProvider()
    try:
        dashfrog_sdk.setup(
            tracer_provider=tracer_provider,
            logger_provider=logger_provider,
            propagate_to="127.0.0.1",
            propagation_key=KEY,
            store=False,
            console=False,
            handle_sigterm=False,
            flow_metrics=False,
        )
        with_requests()
        with_httpx()
        yield
    finally:
        unwrap_httpx()
        unwrap_requests()
        dashfrog_sdk.shutdown()
        tracer_provider.shutdown()
        logger_provider.shutdown()
        if saved is None:
            os.environ.pop("OTEL_PROPAGATORS", None)
        else:
            os.environ["OTEL_PROPAGATORS"] = saved


def get(client: str, url: str, headers: dict[str, Any] | None = None) -> int:
    """GET `url` following redirects with a real client, in the caller's context; the status."""
    if client == "requests":
        return requests.get(url, headers=headers, timeout=20).status_code
    if client == "requests-session":
        with requests.Session() as session:
            return session.get(url, headers=headers, timeout=20).status_code
    if client == "httpx":
        with httpx.Client(timeout=20, follow_redirects=True) as http:
            return http.get(url, headers=headers).status_code

    async def async_get() -> int:  # asyncio.run copies the caller's context into its task
        async with httpx.AsyncClient(timeout=20, follow_redirects=True) as http:
            return (await http.get(url, headers=headers)).status_code

    return asyncio.run(async_get())


def dashfrog_members(headers: dict[str, str]) -> dict[str, str]:
    """Every dashfrog member a request carried, in any propagator's header."""
    found = {k: v for k, v in parse_header(headers.get("baggage", "")).items() if "dashfrog" in k}
    found |= {k: v for k, v in headers.items() if "dashfrog" in k}  # uberctx-*, ot-baggage-*
    return found


def in_flow(fn: Any, foreign: bool = True) -> str:
    """Run `fn()` inside a flow (that also carries someone else's baggage); the flow id."""
    token = otel_context.attach(
        baggage.set_baggage("user.key", "kept") if foreign else otel_context.get_current()
    )
    try:
        with flow.start("checkout", tenant=TENANT, plan="gold") as flow_id:
            fn()
    finally:
        otel_context.detach(token)
    return flow_id


# -- 1. every redirect hop is judged on its own host -----------------------------------------


@pytest.mark.parametrize("foreign", [True, False], ids=["other-baggage", "flow-only"])
@pytest.mark.parametrize("client", CLIENTS)
def test_redirect_to_an_outside_host_carries_no_flow(
    client: str, foreign: bool, inside: Recorder, outside: Recorder, service_a: None
) -> None:
    tag = unique(client)
    end = f"{outside.url}/end?{tag}"
    name_hop = f"http://localhost:{inside.server_address[1]}/named?{tag}"  # 127.0.0.1, by name
    before = diagnostics.counts().get("baggage.redirect_withheld", 0)

    def calls() -> None:
        assert get(client, f"{inside.url}/hop?to={end}") == 200
        assert get(client, f"{inside.url}/hop?to={name_hop}") == 200

    flow_id = in_flow(calls, foreign)
    first = inside.seen[f"/hop?to={end}"]
    assert parse_header(first["baggage"])[c.FLOW_ID] == flow_id  # the allowed host got it, signed
    assert c.BAGGAGE_SIGNATURE in parse_header(first["baggage"])
    for hop in (outside.seen[f"/end?{tag}"], inside.seen[f"/named?{tag}"]):
        assert dashfrog_members(hop) == {}, hop
        if foreign:  # others' baggage still goes
            assert parse_header(hop["baggage"]) == {"user.key": "kept"}
    assert diagnostics.counts()["baggage.redirect_withheld"] - before == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_each_hop_that_is_allowed_gets_the_flow(
    client: str, inside: Recorder, outside: Recorder, service_a: None
) -> None:
    tag = unique(client)
    # outside -> inside: the hop to the allowed host carries the flow, the first one does not
    flow_id = in_flow(lambda: get(client, f"{outside.url}/hop?to={inside.url}/back?{tag}"))
    assert dashfrog_members(outside.seen[f"/hop?to={inside.url}/back?{tag}"]) == {}
    back = parse_header(inside.seen[f"/back?{tag}"]["baggage"])
    assert back[c.FLOW_ID] == flow_id and back[c.TENANT] == TENANT
    assert c.BAGGAGE_SIGNATURE in back


@pytest.mark.parametrize("client", CLIENTS)
def test_artifacts_and_progress_never_leave_in_headers(
    client: str, inside: Recorder, service_a: None
) -> None:
    """A step's artifact and progress are step data: a call made after them, to a host that
    gets the flow (and with jaeger and ottrace running too), carries neither."""
    tag = unique(client)
    secret = f"artifact-secret-{tag}"

    def calls() -> None:
        with step.start("import_rows") as s:
            s.artifact("summary", {"token": secret, "rows": 3})
            s.progress(1, total=2, message=f"progress-{secret}")
            assert get(client, f"{inside.url}/after?{tag}") == 200

    flow_id = in_flow(calls, foreign=False)
    headers = inside.seen[f"/after?{tag}"]
    assert parse_header(headers["baggage"])[c.FLOW_ID] == flow_id  # the flow itself went
    assert not any(secret in v or secret in k for k, v in headers.items()), headers
    assert not any("artifact" in k or "progress" in k for k in dashfrog_members(headers))


# -- 2. numeric host forms are judged as the IP they are --------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_numeric_host_forms_are_judged_as_their_ip(
    client: str, inside: Recorder, outside: Recorder, service_a: None
) -> None:
    tag = unique(client)
    # 127.0.0.1 (allowed) and 127.0.0.2 (not) spelled as one decimal or hex number, or short
    allowed = ["2130706433", "0x7f000001", "127.1"]
    refused = ["2130706434", "0x7f000002", "127.2"]
    if client.startswith("requests"):  # httpx refuses leading zeros; requests and the OS do not
        refused.append("0177.0.0.2")

    def calls() -> None:
        for form in allowed:
            assert get(client, f"http://{form}:{inside.server_address[1]}/n?{tag}-{form}") == 200
        for form in refused:
            assert get(client, f"http://{form}:{outside.server_address[1]}/n?{tag}-{form}") == 200

    flow_id = in_flow(calls)
    for form in allowed:
        assert parse_header(inside.seen[f"/n?{tag}-{form}"]["baggage"])[c.FLOW_ID] == flow_id
    for form in refused:
        assert dashfrog_members(outside.seen[f"/n?{tag}-{form}"]) == {}, form


# -- 3. other baggage propagators: dashfrog members neither out nor in -------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_jaeger_and_ottrace_never_carry_the_flow_out(
    client: str, inside: Recorder, outside: Recorder, service_a: None
) -> None:
    tag = unique(client)
    in_flow(lambda: (get(client, f"{outside.url}/j?{tag}"), get(client, f"{inside.url}/j?{tag}")))
    to_outside, to_inside = outside.seen[f"/j?{tag}"], inside.seen[f"/j?{tag}"]
    assert dashfrog_members(to_outside) == {}, to_outside
    # the two propagators do run (trace context and the other baggage in their own headers)
    assert "uber-trace-id" in to_outside and to_outside["uberctx-user.key"] == "kept"
    assert to_outside["ot-baggage-user.key"] == "kept"
    # to the allowed host, the flow goes in the W3C baggage header only (signed)
    assert not [k for k in to_inside if "dashfrog" in k]
    assert c.FLOW_ID in parse_header(to_inside["baggage"])


class ServiceB:
    def __init__(self, name: str, urls: dict[str, str], proc: ManagedProcess) -> None:
        self.name, self.urls, self.proc = name, urls, proc

    def diag(self, app: str) -> dict[str, int]:
        result: dict[str, int] = requests.get(self.urls[app] + "/diag", timeout=20).json()
        return result


@pytest.fixture(scope="module")
def service_b(collector: RotelCollector) -> Iterator[ServiceB]:
    apps = ["fastapi", "flask", "fastapi-untrusted", "flask-untrusted"]
    ports = {app: free_port() for app in apps}
    name = unique("svc-b-sec")
    env = service_env(collector, name, DASHFROG_PROPAGATION_KEY=KEY, OTEL_PROPAGATORS=PROPAGATORS)
    proc = ManagedProcess(
        [PYTHON, "-m", "tests.integrations.apps.http_service"]
        + [f"{app}={port}" for app, port in ports.items()],
        env=env,
        cwd=ROOT,
        name=name,
    ).start()
    for port in ports.values():
        wait_for_port("127.0.0.1", port, timeout=30, process=proc)
    service = ServiceB(name, {a: f"http://127.0.0.1:{p}" for a, p in ports.items()}, proc)
    yield service
    assert proc.stop() == 0, proc.log_text()


FORGED_IDENTITY = {
    "dashfrog.flow.id": "f" * 32,
    "dashfrog.flow.name": "forged",
    "dashfrog.tenant": "victim",
}


def _foreign_headers() -> dict[str, str]:
    headers = {"uber-trace-id": f"{'a' * 32}:{'b' * 16}:0:1"}
    headers |= {"ot-tracer-traceid": "c" * 32, "ot-tracer-spanid": "d" * 16}
    headers["ot-tracer-sampled"] = "true"
    for key, value in FORGED_IDENTITY.items():
        headers[f"uberctx-{key}"] = value
        headers[f"ot-baggage-{key}"] = value
    headers["uberctx-user.key"] = "kept"
    return headers


@pytest.mark.parametrize("app", ["fastapi", "flask", "fastapi-untrusted", "flask-untrusted"])
def test_jaeger_and_ottrace_cannot_bring_a_flow_in(app: str, service_b: ServiceB) -> None:
    before = service_b.diag(app).get("baggage.foreign_dropped", 0)
    seen = requests.get(service_b.urls[app] + "/work", headers=_foreign_headers(), timeout=20)
    assert seen.status_code == 200
    assert seen.json()["flow"] is None
    assert seen.json()["dashfrog"] == {}
    assert service_b.diag(app)["baggage.foreign_dropped"] - before >= 3


# -- 4/5. the signature: exact, dated, and never a 500 ------------------------------------------


def _signed(members: dict[str, str], at: float) -> str:
    items = list(members.items())
    return ",".join(
        [encode_member(k, v) for k, v in items]
        + [encode_member(c.BAGGAGE_SIGNATURE, sign(items, KEY.encode(), now=at))]
    )


@pytest.mark.parametrize("app", ["fastapi", "flask"])
def test_a_fresh_signature_is_accepted_an_old_one_is_not(app: str, service_b: ServiceB) -> None:
    url = service_b.urls[app] + "/work"
    fresh = requests.get(
        url, headers={"baggage": _signed(FORGED_IDENTITY, time.time())}, timeout=20
    )
    assert fresh.json()["flow"]["tenant"] == "victim"  # made with the key: trusted
    before = service_b.diag(app).get("baggage.expired", 0)
    old = _signed(FORGED_IDENTITY, time.time() - 8 * 86400)  # over the 7-day default
    future = _signed(FORGED_IDENTITY, time.time() + 3600)
    for header in (old, future):
        seen = requests.get(url, headers={"baggage": header}, timeout=20)
        assert seen.status_code == 200 and seen.json()["flow"] is None
    assert service_b.diag(app)["baggage.expired"] - before == 2


@pytest.mark.parametrize("app", ["fastapi", "flask"])
def test_malformed_signatures_are_rejected_never_a_500(app: str, service_b: ServiceB) -> None:
    url = service_b.urls[app] + "/work"
    good = _signed(FORGED_IDENTITY, time.time())
    members = ",".join(encode_member(k, v) for k, v in FORGED_IDENTITY.items())
    malformed = [
        members + ",dashfrog.sig=\xe9\xe9",  # non-ASCII (latin-1 on the wire)
        members + ",dashfrog.sig=" + "%C3%A9" * 3,  # non-ASCII once decoded
        members + ",dashfrog.sig=",  # empty
        members + ",dashfrog.sig=v1.x.y",  # not the format
        members + ",dashfrog.sig=" + "A" * 43,  # the old, undated format
        good + ",dashfrog.tenant=second",  # a member repeated
        good.replace("dashfrog.sig=v1.", "dashfrog.sig=v1.0"),  # another time
    ]
    before = service_b.diag(app).get("baggage.rejected", 0)
    for header in malformed:
        seen = requests.get(url, headers={"baggage": header.encode("latin-1")}, timeout=20)
        assert seen.status_code == 200, (header, seen.text)
        assert seen.json()["flow"] is None, header
    assert service_b.diag(app)["baggage.rejected"] - before == len(malformed)


# -- 8. trust_incoming=False changes dashfrog members only ------------------------------------


def test_untrusting_fastapi_keeps_every_other_header_byte_for_byte(service_b: ServiceB) -> None:
    foreign = "user.key=caf\u00e9 cr\u00e8me".encode()  # raw UTF-8, as some peers send it
    sent = {
        "baggage": foreign + b",dashfrog.tenant=victim,other=%F0%9F%90%B8",
        "x-empty": b"",
        "x-latin": "\u00e9t\u00e9".encode("latin-1"),
    }
    response = requests.get(service_b.urls["fastapi-untrusted"] + "/headers", headers=sent)
    got = [(bytes.fromhex(n), bytes.fromhex(v)) for n, v in response.json()]
    assert (b"baggage", foreign + b",other=%F0%9F%90%B8") in got
    assert (b"x-empty", b"") in got
    assert (b"x-latin", "\u00e9t\u00e9".encode("latin-1")) in got
    # a header that holds nothing but dashfrog members goes entirely
    only = requests.get(
        service_b.urls["fastapi-untrusted"] + "/headers", headers={"baggage": "dashfrog.tenant=x"}
    )
    assert not [n for n, _ in only.json() if bytes.fromhex(n) == b"baggage"]
