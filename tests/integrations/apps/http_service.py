"""Service B of the HTTP tests: FastAPI (uvicorn) and Flask (werkzeug) apps in one process.

    python -m tests.integrations.apps.http_service fastapi=PORT fastapi-untrusted=PORT \
        flask=PORT flask-untrusted=PORT

Each app answers ``GET /work`` (a ``process_payment`` step; returns what it saw, see
:func:`seen`), ``GET /fail/<how>`` (the caller's flow fails here, see :func:`fail`),
``GET /diag`` (``dashfrog_sdk.diagnostics.counts()``) and, FastAPI only, ``GET /headers`` (the
raw ASGI headers, hex). The process runs until SIGTERM/SIGINT, then stops its servers and
flushes. Configured by the environment (OTEL_*, DASHFROG_*), like a real service.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import uvicorn
from fastapi import BackgroundTasks, FastAPI, Request
from flask import Flask, jsonify
from flask import request as flask_request
from werkzeug.serving import make_server

import dashfrog_sdk
from dashfrog_sdk import diagnostics, flow, step
from dashfrog_sdk.integrations import with_fastapi, with_flask
from tests.integrations.apps.common import seen


def fail(how: str) -> None:
    """The ways a downstream service fails its caller's flow (or, `optional`, does not):
    `caught` a failed step whose exception is caught, `raise` one that escapes (HTTP 500),
    `flow` flow.fail(error), `optional` a failed optional step, `surrogate` a caught failure
    whose message holds a lone surrogate (cleaned to U+FFFD on its way back)."""
    if how == "flow":
        flow.fail(ValueError("card declined"))
        return
    try:
        with step.start("charge", optional=how == "optional"):
            raise ValueError("card \ud800 exploded" if how == "surrogate" else "card exploded")
    except ValueError:
        if how == "raise":
            raise


def fastapi_app(trust: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/work")
    async def work(request: Request) -> dict[str, Any]:
        with step.start("process_payment"):
            return seen(request.headers.get("baggage"))

    @app.get("/fail/{how}")
    async def fail_here(how: str, background: BackgroundTasks) -> dict[str, str]:
        if how == "background":  # after the response went out
            background.add_task(fail, "caught")
        else:
            fail(how)
        return {"failed": how}

    @app.get("/diag")
    async def diag() -> dict[str, int]:
        return diagnostics.counts()

    @app.get("/headers")
    async def headers(request: Request) -> list[list[str]]:
        # the raw header bytes the app received (hex): nothing decoded, nothing dropped
        return [[name.hex(), value.hex()] for name, value in request.scope["headers"]]

    return with_fastapi(app, trust_incoming=trust)


def flask_app(trust: bool) -> Flask:
    app = Flask(__name__)

    @app.get("/work")
    def work() -> Any:
        with step.start("process_payment"):
            return jsonify(seen(flask_request.headers.get("baggage")))

    @app.get("/fail/<how>")
    def fail_here(how: str) -> Any:
        fail(how)
        return jsonify({"failed": how})

    @app.get("/diag")
    def diag() -> Any:
        return jsonify(diagnostics.counts())

    return with_flask(app, trust_incoming=trust)


def main(args: list[str]) -> None:
    # Blocked before any thread starts, so that only sigwait() below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    stops = []
    for arg in args:
        kind, _, port = arg.partition("=")
        trust = not kind.endswith("-untrusted")
        if kind.startswith("fastapi"):
            config = uvicorn.Config(fastapi_app(trust), "127.0.0.1", int(port), log_level="warning")
            server = uvicorn.Server(config)  # not the main thread: installs no signal handlers
            threading.Thread(target=server.run, daemon=True).start()
            stops.append(lambda s=server: setattr(s, "should_exit", True))
        else:
            wsgi = make_server("127.0.0.1", int(port), flask_app(trust), threaded=True)
            threading.Thread(target=wsgi.serve_forever, daemon=True).start()
            stops.append(wsgi.shutdown)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for stop in stops:
        stop()
    dashfrog_sdk.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
