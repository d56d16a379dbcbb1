"""Service C: a Flask stock service that joins the caller's flow.

OTEL_SERVICE_NAME=stock python service_c.py --port 8002
"""

from __future__ import annotations

import argparse

from flask import Flask, jsonify

from dashfrog_sdk import flow, step, with_flask

app = with_flask(Flask("stock"))


@app.post("/reserve/<sku>")
def reserve(sku: str):  # type: ignore[no-untyped-def]
    with step.start("reserve_stock", sku=sku):
        current = flow.current()
        return jsonify(reserved=sku, tenant=current.tenant if current else None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8002)
    app.run(host="127.0.0.1", port=parser.parse_args().port)
