"""Fixtures for the flow store tests: real SQLite files, real OTel SDK pipelines.

:class:`Pipe` feeds a store through the real ``build_processors`` exactly as the core's
``setup()`` does, and emits the spans and event records the core emits (names and attributes
from ``dashfrog_sdk.conventions``), so the store can be tested record by record: arrival order,
missing pieces, several services. ``tests/store/flowapp.py`` drives the real ``flow``/``step``
API in subprocesses for the end-to-end tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Status, StatusCode

from dashfrog_sdk import conventions as c
from dashfrog_sdk.store import build_processors
from tests.support import ROOT, clean_env

FLOWAPP = Path(__file__).with_name("flowapp.py")


@dataclass
class FlowHandle:
    id: str
    name: str
    tenant: str
    attrs: dict[str, Any]
    span: Span | None = None
    start_ns: int = 0
    status: str = c.COMPLETED
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Pipe:
    """A TracerProvider + LoggerProvider for one service, writing to one store file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        service: str = "api",
        *,
        max_age_s: float | None = None,
        max_flows: int | None = None,
        max_queue: int | None = None,
    ) -> None:
        resource = Resource.create({"service.name": service})
        bound = {} if max_queue is None else {"max_queue": max_queue}
        self.span_processor, self.log_processor = build_processors(
            os.fspath(path), max_age_s=max_age_s, max_flows=max_flows, **bound
        )
        self.tp = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.tp.add_span_processor(self.span_processor)
        self.lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.lp.add_log_record_processor(self.log_processor)
        self.tracer = self.tp.get_tracer(c.SCOPE_NAME)
        self.logger = self.lp.get_logger(c.SCOPE_NAME)

    @property
    def writer(self) -> Any:
        return self.span_processor.queue.writer

    # -- emitting like the core ---------------------------------------------------------
    def emit(
        self,
        event_name: str | None,
        attrs: dict[str, Any],
        span: Span | None = None,
        body: Any = None,
        severity: str | None = None,
        logger: str | None = None,
        ts: int | None = None,
    ) -> None:
        ctx = trace.set_span_in_context(span) if span is not None else None
        record = LogRecord(
            timestamp=ts or time.time_ns(),
            context=ctx,
            event_name=event_name,
            attributes=attrs,
            body=body,
            severity_text=severity,
            severity_number=SeverityNumber.INFO if severity else None,
        )
        target = self.lp.get_logger(logger) if logger else self.logger
        target.emit(record)

    @contextmanager
    def flow(
        self,
        name: str,
        tenant: str,
        *,
        flow_id: str | None = None,
        end_on_exit: bool = True,
        timeout: float | None = None,
        parent: FlowHandle | None = None,
        start_event: bool = True,
        **labels: Any,
    ) -> Iterator[FlowHandle]:
        attrs: dict[str, Any] = {
            c.FLOW_ID: flow_id or uuid.uuid4().hex,
            c.FLOW_NAME: name,
            c.TENANT: tenant,
        }
        attrs.update({c.label_key(k): v for k, v in labels.items()})
        if parent is not None:
            attrs[c.FLOW_PARENT_ID] = parent.id
        span_attrs = {**attrs, c.FLOW_END_ON_EXIT: end_on_exit}
        if timeout is not None:
            span_attrs[c.FLOW_TIMEOUT] = timeout
        handle = FlowHandle(attrs[c.FLOW_ID], name, tenant, attrs)
        with self.tracer.start_as_current_span(
            c.FLOW_SPAN_PREFIX + name,
            attributes=span_attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            handle.span = span
            handle.start_ns = span.start_time  # type: ignore[attr-defined]
            if start_event:
                self.emit(c.EVENT_FLOW_START, dict(span_attrs), span)
            try:
                yield handle
            except Exception as exc:
                handle.status, handle.error = c.FAILED, exc
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute(c.ERROR_TYPE, type(exc).__name__)
                span.set_attribute(c.ERROR_MESSAGE, str(exc))
                raise
            finally:
                status = handle.status if end_on_exit or handle.error else c.RUNNING
                span.set_attribute(c.FLOW_STATUS, status)

    @contextmanager
    def step(
        self, fh: FlowHandle, name: str, *, optional: bool = False, **attributes: Any
    ) -> Iterator[Span]:
        attrs = {**fh.attrs, c.STEP_NAME: name, **attributes}
        if optional:
            attrs[c.STEP_OPTIONAL] = True
        with self.tracer.start_as_current_span(
            c.STEP_SPAN_PREFIX + name,
            attributes=attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            self.emit(c.EVENT_STEP_START, {**fh.attrs, c.STEP_NAME: name}, span)
            try:
                yield span
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute(c.STEP_STATUS, c.FAILED)
                span.set_attribute(c.ERROR_TYPE, type(exc).__name__)
                span.set_attribute(c.ERROR_MESSAGE, str(exc))
                if not optional:
                    fh.status = c.FAILED
                raise
            span.set_attribute(c.STEP_STATUS, c.COMPLETED)

    def progress(
        self,
        fh: FlowHandle,
        step: str,
        span: Span,
        done: float,
        total: float | None = None,
        message: str | None = None,
        *,
        last: bool = False,
    ) -> None:
        """A dashfrog.step.progress event as `s.progress()` records it; `last=True`: the value
        the step span carries at its end instead."""
        attrs: dict[str, Any] = {c.STEP_PROGRESS_DONE: done}
        if total is not None:
            attrs[c.STEP_PROGRESS_TOTAL] = total
        if message is not None:
            attrs[c.STEP_PROGRESS_MESSAGE] = message
        if last:
            span.set_attributes(attrs)
        else:
            self.emit(c.EVENT_STEP_PROGRESS, {**fh.attrs, c.STEP_NAME: step, **attrs}, span)

    def artifact(self, fh: FlowHandle, step: str, span: Span, name: str, value: Any) -> None:
        """A dashfrog.step.artifact event as `s.artifact()` records it."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        attrs = {**fh.attrs, c.STEP_NAME: step, c.ARTIFACT_NAME: name, c.ARTIFACT_VALUE: text}
        self.emit(c.EVENT_STEP_ARTIFACT, attrs, span)

    def span(self, fh: FlowHandle, name: str, **kw: Any) -> Any:
        return self.tracer.start_as_current_span(name, attributes=dict(fh.attrs), **kw)

    def event(self, fh: FlowHandle, name: str, **attributes: Any) -> None:
        span = trace.get_current_span()
        self.emit(c.EVENT_FLOW_EVENT, {**fh.attrs, c.EVENT_NAME_ATTR: name, **attributes}, span)

    def log(
        self, fh: FlowHandle, message: str, step: str | None = None, level: str = "INFO"
    ) -> None:
        attrs = dict(fh.attrs)
        if step:
            attrs[c.STEP_NAME] = step
        self.emit(
            None, attrs, trace.get_current_span(), body=message, severity=level, logger="app.orders"
        )

    def end(
        self,
        fh: FlowHandle,
        status: str = c.COMPLETED,
        *,
        start_ns: int | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        """The dashfrog.flow.end event, as a process that did not start the flow sends it."""
        span = fh.span
        assert span is not None
        ctx = span.get_span_context()
        now = time.time_ns()
        start = start_ns if start_ns is not None else fh.start_ns
        attrs = {
            **fh.attrs,
            c.FLOW_STATUS: status,
            c.FLOW_START_TIME: start,
            c.FLOW_END_TIME: now,
            c.FLOW_DURATION_MS: (now - start) / 1e6,
            c.FLOW_TRACE_ID: format(ctx.trace_id, "032x"),
            c.FLOW_SPAN_ID: format(ctx.span_id, "016x"),
        }
        if error:
            attrs[c.ERROR_TYPE], attrs[c.ERROR_MESSAGE] = error
        self.emit(c.EVENT_FLOW_END, attrs, trace.get_current_span())

    def flush(self) -> None:
        assert self.tp.force_flush(10_000)
        assert self.lp.force_flush(10_000)

    def close(self) -> None:
        self.tp.shutdown()
        self.lp.shutdown()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "flows.db"


@pytest.fixture
def pipe(store_path: Path) -> Iterator[Pipe]:
    p = Pipe(store_path)
    yield p
    p.close()


def run_flowapp(
    *args: str,
    store: Path,
    service: str = "api",
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``flowapp.py`` (the real SDK) to completion; return its stdout."""
    proc = subprocess.run(
        [sys.executable, str(FLOWAPP), *args],
        env=flowapp_env(store, service, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def flowapp_env(store: Path, service: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = clean_env()
    env.update(
        OTEL_SERVICE_NAME=service,
        DASHFROG_STORE=str(store),
        DASHFROG_CONSOLE="off",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real ``dashfrog`` command, as a subprocess."""
    full_env = clean_env(drop=("DASHFROG_",))
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dashfrog_sdk.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@dataclass
class DemoStore:
    path: Path
    ids: dict[str, str]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """A store written by the real SDK in subprocesses: the demo flows, a flow started by an
    "api" process and ended by a "worker" process, and a flow that timed out."""
    import json

    path = tmp_path_factory.mktemp("demo") / "flows.db"
    ids = json.loads(run_flowapp("demo", store=path))
    started = json.loads(run_flowapp("start_remote", store=path, service="api"))
    run_flowapp("finish_remote", json.dumps(started["carrier"]), store=path, service="worker")
    ids["remote"] = started["flow_id"]
    ids["timed_out"] = json.loads(run_flowapp("timeout", store=path))["flow_id"]
    time.sleep(0.25)  # its 0.2 s timeout passes
    return DemoStore(path, ids)
