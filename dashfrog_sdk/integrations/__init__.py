"""Thin wrappers around the OpenTelemetry instrumentors, with dashfrog's propagation rules.

Each function imports its framework only when called, so `dashfrog_sdk` imports without any of
them; a missing one raises ImportError with the extra to install.

Example:
    >>> from dashfrog_sdk import with_fastapi, with_httpx
    >>> app = with_fastapi(FastAPI())          # joins callers' flows
    >>> with_httpx()                           # carries the flow to internal hosts only
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery
    from fastapi import FastAPI
    from flask import Flask

__all__ = [
    "unwrap_celery",
    "unwrap_fastapi",
    "unwrap_flask",
    "unwrap_httpx",
    "unwrap_requests",
    "with_celery",
    "with_fastapi",
    "with_flask",
    "with_httpx",
    "with_requests",
]


def with_fastapi(
    app: FastAPI, *, trust_incoming: bool = True, record_send_receive: bool = False
) -> FastAPI:
    """Server spans for `app`, joining callers' flows (`trust_incoming=False`: never)."""
    from dashfrog_sdk.integrations import fastapi

    return fastapi.with_fastapi(
        app, trust_incoming=trust_incoming, record_send_receive=record_send_receive
    )


def unwrap_fastapi(app: FastAPI) -> None:
    from dashfrog_sdk.integrations import fastapi

    fastapi.unwrap_fastapi(app)


def with_flask(app: Flask, *, trust_incoming: bool = True) -> Flask:
    """Server spans for `app`, joining callers' flows (`trust_incoming=False`: never)."""
    from dashfrog_sdk.integrations import flask

    return flask.with_flask(app, trust_incoming=trust_incoming)


def unwrap_flask(app: Flask) -> None:
    from dashfrog_sdk.integrations import flask

    flask.unwrap_flask(app)


def with_celery(app: Celery) -> Celery:
    """Task spans on the producer and worker sides; tasks carry and join the flow."""
    from dashfrog_sdk.integrations import celery

    return celery.with_celery(app)


def unwrap_celery() -> None:
    from dashfrog_sdk.integrations import celery

    celery.unwrap_celery()


def with_requests() -> None:
    """Client spans for `requests`; the flow goes to allowed hosts only."""
    from dashfrog_sdk.integrations import requests

    requests.with_requests()


def unwrap_requests() -> None:
    from dashfrog_sdk.integrations import requests

    requests.unwrap_requests()


def with_httpx() -> None:
    """Client spans for `httpx` (sync and async); the flow goes to allowed hosts only."""
    from dashfrog_sdk.integrations import httpx

    httpx.with_httpx()


def unwrap_httpx() -> None:
    from dashfrog_sdk.integrations import httpx

    httpx.unwrap_httpx()
