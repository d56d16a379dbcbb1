"""ClickHouse for the tests: chDB (the real engine, in-process) filled the way the OpenTelemetry
Collector's ``clickhouse`` exporter fills it, and a ClickHouse HTTP endpoint over chDB.

:func:`trace_rows` / :func:`log_rows` map OTLP export requests (the protobufs an SDK sends) to
``otel_traces`` / ``otel_logs`` rows as the exporter does (read in
open-telemetry/opentelemetry-collector-contrib, exporter/clickhouseexporter/exporter_traces.go
and exporter_logs.go): every attribute map flattened to strings (``AsString``: ints in decimal,
booleans as ``true``/``false``, arrays and maps as JSON), ``ServiceName`` from the resource's
``service.name``, ``Duration`` = end - start in ns, span kind and status code as the proto's
enum names (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``), hex ids with ``""`` for none, a log's
``Timestamp`` falling back to its observed time, and ``EventName`` from the record's
``event_name``.

:class:`OtlpRowSpanExporter` / :class:`OtlpRowLogExporter` are OTel SDK exporters that encode
each batch with the OTLP exporter's own encoders and write the mapped rows: an SDK pipeline
feeding ClickHouse exactly as SDK -> OTLP -> collector -> clickhouse exporter would.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from dashfrog_sdk.clickhouse import migrate
from dashfrog_sdk.clickhouse.connection import ChdbTransport, Target, Transport, render
from tests.support import ROOT
from tests.support.procs import ManagedProcess, free_port, port_open, wait_until

_SPAN_KINDS = {
    0: "SPAN_KIND_UNSPECIFIED",
    1: "SPAN_KIND_INTERNAL",
    2: "SPAN_KIND_SERVER",
    3: "SPAN_KIND_CLIENT",
    4: "SPAN_KIND_PRODUCER",
    5: "SPAN_KIND_CONSUMER",
}
_STATUS_CODES = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}


# -- OTLP -> exporter rows ----------------------------------------------------------------------


def _go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    text = format(Decimal(repr(value)), "f")
    return text[:-2] if text.endswith(".0") else text


def _raw(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind) if kind else None


def as_string(value: AnyValue) -> str:
    """pcommon.Value.AsString()."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _go_float(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return json.dumps(_raw(value), separators=(",", ":"), ensure_ascii=False)


def attributes_map(attributes: Iterable[KeyValue]) -> dict[str, str]:
    return {kv.key: as_string(kv.value) for kv in attributes}


def _hex(raw: bytes) -> str:
    return raw.hex() if raw and any(raw) else ""


def _time(ns: int) -> str:
    """A DateTime64(9) value for JSONEachRow input, in UTC."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{frac:09d}"


def trace_rows(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = attributes_map(resource_spans.resource.attributes)
        service = resource.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                rows.append(
                    {
                        "Timestamp": _time(span.start_time_unix_nano),
                        "TraceId": _hex(span.trace_id),
                        "SpanId": _hex(span.span_id),
                        "ParentSpanId": _hex(span.parent_span_id),
                        "TraceState": span.trace_state,
                        "SpanName": span.name,
                        "SpanKind": _SPAN_KINDS.get(span.kind, ""),
                        "ServiceName": service,
                        "ResourceAttributes": resource,
                        "ScopeName": scope_spans.scope.name,
                        "ScopeVersion": scope_spans.scope.version,
                        "SpanAttributes": attributes_map(span.attributes),
                        "Duration": span.end_time_unix_nano - span.start_time_unix_nano,
                        "StatusCode": _STATUS_CODES.get(span.status.code, ""),
                        "StatusMessage": span.status.message,
                        "Events.Timestamp": [_time(e.time_unix_nano) for e in span.events],
                        "Events.Name": [e.name for e in span.events],
                        "Events.Attributes": [attributes_map(e.attributes) for e in span.events],
                        "Links.TraceId": [_hex(link.trace_id) for link in span.links],
                        "Links.SpanId": [_hex(link.span_id) for link in span.links],
                        "Links.TraceState": [link.trace_state for link in span.links],
                        "Links.Attributes": [
                            attributes_map(link.attributes) for link in span.links
                        ],
                    }
                )
    return rows


def log_rows(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for resource_logs in request.resource_logs:
        resource = attributes_map(resource_logs.resource.attributes)
        service = resource.get("service.name", "")
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                ts = record.time_unix_nano or record.observed_time_unix_nano
                rows.append(
                    {
                        "Timestamp": _time(ts),
                        "TraceId": _hex(record.trace_id),
                        "SpanId": _hex(record.span_id),
                        "TraceFlags": record.flags & 0xFF,
                        "SeverityText": record.severity_text,
                        "SeverityNumber": int(record.severity_number),
                        "ServiceName": service,
                        "Body": as_string(record.body),
                        "ResourceSchemaUrl": resource_logs.schema_url,
                        "ResourceAttributes": resource,
                        "ScopeSchemaUrl": scope_logs.schema_url,
                        "ScopeName": scope_logs.scope.name,
                        "ScopeVersion": scope_logs.scope.version,
                        "ScopeAttributes": attributes_map(scope_logs.scope.attributes),
                        "LogAttributes": attributes_map(record.attributes),
                        "EventName": record.event_name,
                    }
                )
    return rows


def insert_sql(database: str, table: str, rows: Sequence[dict[str, Any]]) -> str:
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    return (
        f"INSERT INTO `{database}`.`{table}` SETTINGS date_time_input_format = 'best_effort' "
        f"FORMAT JSONEachRow\n{body}"
    )


# -- a database in the session's chDB --------------------------------------------------------


@dataclass
class ChDatabase:
    """One database of the test session's chDB directory, with the exporter's tables and
    (unless ``rollup=False``) the flow rollup applied by the real ``init`` code."""

    path: str
    database: str
    transport: Transport

    @property
    def url(self) -> str:
        return f"chdb://{self.path}?database={self.database}"

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.transport.command(insert_sql(self.database, table, rows))

    def write_spans(self, spans: Sequence[ReadableSpan]) -> None:
        self.insert("otel_traces", trace_rows(encode_spans(spans)))

    def write_logs(self, records: Sequence[ReadableLogRecord]) -> None:
        self.insert("otel_logs", log_rows(encode_logs(records)))

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.transport.rows(render(sql, database=self.database))


def new_database(
    path: str, *, rollup: bool = True, transport: Transport | None = None
) -> ChDatabase:
    """A fresh database in the chDB directory ``path`` (one directory per process: chDB runs one
    engine per process, so tests share it and keep apart by database), or behind ``transport``
    (a ClickHouse HTTP endpoint)."""
    database = "t_" + uuid.uuid4().hex[:12]
    if transport is None:
        transport = ChdbTransport(Target("chdb", database, path=path))
    transport.command(f"CREATE DATABASE `{database}`")
    for statement in migrate.statements(migrate.otel_tables_sql()):
        transport.command(render(statement, database=database))
    if rollup:
        migrate.apply(transport, database)
    return ChDatabase(path, database, transport)


class OtlpRowSpanExporter(SpanExporter):
    def __init__(self, db: ChDatabase) -> None:
        self.db = db

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.db.write_spans(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class OtlpRowLogExporter(LogRecordExporter):
    def __init__(self, db: ChDatabase) -> None:
        self.db = db

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.db.write_logs(batch)
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


# -- a ClickHouse HTTP endpoint executing in chDB ----------------------------------------------

ENDPOINT = ROOT / "tests" / "support" / "chdb_http.py"


def endpoint(path: str) -> tuple[ManagedProcess, int]:
    """``tests/support/chdb_http.py`` over chDB directory ``path`` in its own process on a free
    loopback port (not started: use it as a context manager); returns it and the port."""
    port = free_port()
    proc = ManagedProcess(
        [sys.executable, str(ENDPOINT), "--path", path, "--port", str(port)],
        env={"PYTHONPATH": str(ROOT)},
        name="chdb_http",
    )
    return proc, port


def wait_ready(proc: ManagedProcess, port: int) -> None:
    def ready() -> bool:
        if not proc.running:
            raise RuntimeError(f"chdb_http.py exited: {proc.log_text()}")
        return port_open("127.0.0.1", port)

    wait_until(ready, timeout=60, message="the chDB HTTP endpoint did not listen")
