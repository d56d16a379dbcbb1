"""A small in-process OTLP/HTTP receiver that decodes what it gets into plain dataclasses.

It plays the backend behind the real collector: ``POST /v1/traces``, ``/v1/logs`` and
``/v1/metrics`` with protobuf (``application/x-protobuf``) or OTLP/JSON bodies, plain or gzip.
Tests assert on :attr:`OtlpReceiver.spans`, :attr:`~OtlpReceiver.logs` and
:attr:`~OtlpReceiver.metrics`, or wait for data with the ``wait_for_*`` helpers.

Every request is kept, a repeat too: a request received twice is a double send, to be seen.
OTLP delivery is at-least-once: a sender that gets no answer within its timeout sends the
request again, although the first one may have arrived (rotel does so after
``--otlp-exporter-request-timeout``). On a loaded CI runner the test process that runs this
receiver can be starved longer than a short timeout, and a test expecting one record then saw
two: so the harness (``RotelCollector``) gives rotel a request timeout of 60 s, longer than any
starvation, rather than have the receiver hide repeats (which would hide a real double send by
the SDK: the retry of an export that arrived, a forked child exporting its parent's queue).
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.support.procs import Started

__all__ = [
    "HistogramValue",
    "OtlpReceiver",
    "ReceivedEvent",
    "ReceivedLog",
    "ReceivedMetric",
    "ReceivedSpan",
    "any_value",
    "attributes",
]

T = TypeVar("T")
Attrs = dict[str, Any]


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    attributes: Attrs
    time_ns: int


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str  # "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER" (SpanKind names)
    start_ns: int
    end_ns: int
    status_code: str  # "UNSET", "OK", "ERROR" (StatusCode names)
    attributes: Attrs
    resource: Attrs
    scope: str
    events: list[ReceivedEvent] = field(default_factory=list)
    status_message: str = ""
    links: list[tuple[str, str, Attrs]] = field(default_factory=list)  # (trace_id, span_id, attrs)


@dataclass(frozen=True)
class ReceivedLog:
    event_name: str | None  # LogRecord.event_name, else the "event.name" attribute
    body: Any
    attributes: Attrs
    resource: Attrs
    trace_id: str | None
    span_id: str | None
    timestamp_ns: int
    severity: int  # SeverityNumber value, 0 when unset
    severity_text: str = ""
    scope: str = ""


@dataclass(frozen=True)
class HistogramValue:
    count: int
    sum: float
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ReceivedMetric:
    name: str
    kind: str  # "sum", "gauge", "histogram", "exponential_histogram", "summary"
    unit: str
    points: list[tuple[Attrs, Any]]  # (attributes, int | float | HistogramValue)
    resource: Attrs
    scope: str = ""
    description: str = ""
    monotonic: bool | None = None  # sums only
    temporality: str | None = None  # "CUMULATIVE" or "DELTA" for sums and histograms

    def value(self, **attrs: Any) -> Any:
        """Value of the first point whose attributes include ``attrs`` (KeyError if none)."""
        for point_attrs, value in self.points:
            if all(point_attrs.get(k) == v for k, v in attrs.items()):
                return value
        raise KeyError(f"{self.name}: no point with attributes {attrs}; points: {self.points}")


# -- decoding ---------------------------------------------------------------------------------


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as the plain Python value (str/int/float/bool/bytes/list/dict/None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Iterable[KeyValue]) -> Attrs:
    """A repeated KeyValue field as a dict."""
    return {kv.key: any_value(kv.value) for kv in pairs}


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw and any(raw) else None


def _decode_traces(req: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    return [
        ReceivedSpan(
            name=s.name,
            trace_id=s.trace_id.hex(),
            span_id=s.span_id.hex(),
            parent_span_id=_hex(s.parent_span_id),
            kind=Span.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"),
            start_ns=s.start_time_unix_nano,
            end_ns=s.end_time_unix_nano,
            status_code=Status.StatusCode.Name(s.status.code).removeprefix("STATUS_CODE_"),
            attributes=attributes(s.attributes),
            resource=attributes(rs.resource.attributes),
            scope=ss.scope.name,
            events=[
                ReceivedEvent(e.name, attributes(e.attributes), e.time_unix_nano) for e in s.events
            ],
            status_message=s.status.message,
            links=[(k.trace_id.hex(), k.span_id.hex(), attributes(k.attributes)) for k in s.links],
        )
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def _decode_logs(req: ExportLogsServiceRequest) -> list[ReceivedLog]:
    return [
        ReceivedLog(
            event_name=r.event_name or _str_or_none(attributes(r.attributes).get("event.name")),
            body=any_value(r.body) if r.HasField("body") else None,
            attributes=attributes(r.attributes),
            resource=attributes(rl.resource.attributes),
            trace_id=_hex(r.trace_id),
            span_id=_hex(r.span_id),
            timestamp_ns=r.time_unix_nano or r.observed_time_unix_nano,
            severity=int(r.severity_number),
            severity_text=r.severity_text,
            scope=sl.scope.name,
        )
        for rl in req.resource_logs
        for sl in rl.scope_logs
        for r in sl.log_records
    ]


def _str_or_none(value: Any) -> str | None:
    return str(value) if value else None


def _point_value(kind: str, p: Any) -> Any:
    if kind in ("sum", "gauge"):
        return p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
    if kind == "histogram":
        low, high = (p.min if p.HasField("min") else None), (p.max if p.HasField("max") else None)
        return HistogramValue(
            p.count, p.sum, tuple(p.bucket_counts), tuple(p.explicit_bounds), low, high
        )
    if kind == "exponential_histogram":
        return HistogramValue(p.count, p.sum, min=p.min, max=p.max)
    return HistogramValue(p.count, p.sum)  # summary


def _decode_metrics(req: ExportMetricsServiceRequest) -> list[ReceivedMetric]:
    out = []
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data") or "empty"
                data = getattr(m, kind, None)
                temporality = getattr(data, "aggregation_temporality", 0)
                points = [
                    (attributes(p.attributes), _point_value(kind, p))
                    for p in getattr(data, "data_points", [])
                ]
                out.append(
                    ReceivedMetric(
                        name=m.name,
                        kind=kind,
                        unit=m.unit,
                        points=points,
                        resource=attributes(rm.resource.attributes),
                        scope=sm.scope.name,
                        description=m.description,
                        monotonic=getattr(data, "is_monotonic", None),
                        temporality={1: "DELTA", 2: "CUMULATIVE"}.get(temporality),
                    )
                )
    return out


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _json_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf JSON mapping expects base64."""
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in _ID_KEYS and isinstance(v, str) and v
            else _json_ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_json_ids_to_base64(v) for v in node]
    return node


# path -> (request message type, decoder, name of the receiver's list)
_SIGNALS: dict[str, tuple[type[Any], Callable[[Any], list[Any]], str]] = {
    "/v1/traces": (ExportTraceServiceRequest, _decode_traces, "spans"),
    "/v1/logs": (ExportLogsServiceRequest, _decode_logs, "logs"),
    "/v1/metrics": (ExportMetricsServiceRequest, _decode_metrics, "metrics"),
}


# -- server -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the sender gave up waiting
            self.close_connection = True

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        is_json = "json" in self.headers.get("Content-Type", "")
        ctype = "application/json" if is_json else "application/x-protobuf"
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            if path not in _SIGNALS:
                self._reply(404, b"", ctype)
                return
            message_type, decode, signal = _SIGNALS[path]
            message = message_type()
            if is_json:
                data = _json_ids_to_base64(json.loads(body or b"{}"))
                json_format.ParseDict(data, message, ignore_unknown_fields=True)
            else:
                message.ParseFromString(body)
            self.server.receiver._store(signal, decode(message), message)
        except Exception as exc:
            self.server.receiver._record_error(f"{path}: {type(exc).__name__}: {exc}")
            self._reply(400, str(exc).encode(), "text/plain")
            return
        self._reply(200, b"{}" if is_json else b"", ctype)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OtlpReceiver


class OtlpReceiver(Started):
    """OTLP/HTTP receiver on ``host`` (port 0 picks a free port); start()/stop() or ``with``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._cond = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self._metrics: list[ReceivedMetric] = []
        self._errors: list[str] = []
        # (signal, the decoded Export*ServiceRequest) of every request, in arrival order
        self.requests: list[tuple[str, Any]] = []
        self.request_count = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> OtlpReceiver:
        if self._server is not None:
            return self
        server = _Server((self.host, self._port), _Handler)
        server.receiver = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """Base URL; the signal paths (/v1/traces, ...) are appended by OTLP/HTTP exporters."""
        return f"http://{self.host}:{self._port}"

    # -- storage --------------------------------------------------------------------------------

    def _store(self, signal: str, decoded: list[Any], message: Any = None) -> None:
        with self._cond:
            getattr(self, f"_{signal}").extend(decoded)
            self.requests.append((signal, message))
            self.request_count += 1
            self._cond.notify_all()

    def _record_error(self, error: str) -> None:
        with self._cond:
            self._errors.append(error)

    def _snapshot(self, items: list[T]) -> list[T]:
        with self._cond:
            return list(items)

    @property
    def spans(self) -> list[ReceivedSpan]:
        return self._snapshot(self._spans)

    @property
    def logs(self) -> list[ReceivedLog]:
        return self._snapshot(self._logs)

    @property
    def metrics(self) -> list[ReceivedMetric]:
        return self._snapshot(self._metrics)

    @property
    def errors(self) -> list[str]:
        """Requests the receiver could not decode (they got a 400)."""
        return self._snapshot(self._errors)

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()
            self._logs.clear()
            self._metrics.clear()
            self._errors.clear()
            self.request_count = 0

    # -- waiting --------------------------------------------------------------------------------

    def dump(self, limit: int = 50) -> str:
        """A readable summary of everything received, for failure messages."""
        spans, logs, metrics, errors = self.spans, self.logs, self.metrics, self.errors
        lines = [f"received {len(spans)} spans, {len(logs)} logs, {len(metrics)} metrics:"]
        lines += [
            f"  span {s.name!r} kind={s.kind} status={s.status_code} {s.attributes} resource={s.resource}"
            for s in spans[-limit:]
        ]
        lines += [
            f"  log {r.event_name!r} body={r.body!r} {r.attributes} resource={r.resource}"
            for r in logs[-limit:]
        ]
        lines += [f"  metric {m.name!r} {m.kind} points={m.points}" for m in metrics[-limit:]]
        lines += [f"  decode error: {e}" for e in errors]
        return "\n".join(lines)

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 20.0, message: str = "condition"
    ) -> T:
        """Wait until ``predicate()`` is truthy and return it; AssertionError with a dump if not.

        Wakes as soon as new data arrives, and re-checks at least every 50 ms.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.1f}s waiting for {message}; {self.dump()}"
                )
            with self._cond:
                self._cond.wait(min(0.05, remaining))

    def wait_for_spans(
        self,
        pred: Callable[[ReceivedSpan], bool] | None = None,
        count: int = 1,
        timeout: float = 20.0,
    ) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans match ``pred``; return all the matching ones."""
        return self._wait_for_items(lambda: self.spans, pred, count, timeout, "spans")

    def wait_for_logs(
        self,
        pred: Callable[[ReceivedLog], bool] | None = None,
        count: int = 1,
        timeout: float = 20.0,
    ) -> list[ReceivedLog]:
        """Wait until at least ``count`` log records match ``pred``; return the matching ones."""
        return self._wait_for_items(lambda: self.logs, pred, count, timeout, "logs")

    def wait_for_metrics(
        self,
        pred: Callable[[ReceivedMetric], bool] | None = None,
        count: int = 1,
        timeout: float = 20.0,
    ) -> list[ReceivedMetric]:
        """Wait until at least ``count`` metrics match ``pred``; return the matching ones."""
        return self._wait_for_items(lambda: self.metrics, pred, count, timeout, "metrics")

    def _wait_for_items(
        self,
        items: Callable[[], list[T]],
        pred: Callable[[T], bool] | None,
        count: int,
        timeout: float,
        what: str,
    ) -> list[T]:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")

        def matching() -> list[T]:
            found = [i for i in items() if pred is None or pred(i)]
            return found if len(found) >= count else []

        return self.wait_for(matching, timeout, f"{count} matching {what}")
