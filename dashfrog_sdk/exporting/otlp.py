"""OTLP exporters for the three signals, and the processors and metric reader that drive them.

Endpoints, protocols and timeouts come from `config.SignalExport` (parsed from the standard
``OTEL_EXPORTER_OTLP_*`` variables, per-signal forms first). Headers, compression and TLS
files are read by the OTel exporters themselves from the same variables.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from dashfrog_sdk import _fork
from dashfrog_sdk._otel.metrics import fresh_storage, preferences
from dashfrog_sdk.config import Config, SignalExport
from dashfrog_sdk.exporting.counts import counters, outage
from dashfrog_sdk.exporting.pipeline import Pipeline, call_quietly, reachable

__all__ = [
    "CountingMetricExporter",
    "ReliableLogProcessor",
    "ReliableSpanProcessor",
    "log_processor",
    "make_exporter",
    "metric_reader",
    "span_processor",
]

_EMPTY_RESOURCE = Resource.create({})
# gRPC backs off reconnecting exponentially, up to 120 s, and by default channels to one
# address share their connection (and its backoff) process-wide: after a long outage, export
# could resume minutes after the collector is back, and an application's own gRPC channels
# would share our failures. A connection of our own, retried at least every 2 s, instead.
GRPC_CHANNEL_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def make_exporter(signal: str, s: SignalExport) -> Any:
    """The OTel OTLP exporter for `signal` (imported lazily: gRPC costs ~100 ms to import)."""
    kw: dict[str, Any] = {"endpoint": s.url, "timeout": s.timeout_s}
    if s.protocol == "grpc":
        kw["channel_options"] = GRPC_CHANNEL_OPTIONS
        if signal == "traces":
            return _grpc_span_exporter()(**kw)
        if signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            return OTLPLogExporter(**kw)
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(**kw)
    if s.certificate:
        kw["session"] = _session()
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter(**kw)
    if signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (
            OTLPLogExporter as HttpLogExporter,
        )

        return HttpLogExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(**kw)


def _grpc_span_exporter() -> type[Any]:
    """The stock OTLP/gRPC span exporter (channel, retries, errors) with dashfrog's encoder
    (_otel/span_encoder.py: the same request, each distinct string attribute encoded once)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from dashfrog_sdk._otel.span_encoder import encode_spans

    class SpanExporter(OTLPSpanExporter):
        def _translate_data(self, data: Any) -> Any:
            return encode_spans(data)

    return SpanExporter


def _session() -> Any:
    """A requests session that keeps the CA file the exporter sets on it.

    requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` (set in many container images)
    override ``session.verify`` (psf/requests#3829), so the OTLP/HTTP exporter would silently
    ignore ``OTEL_EXPORTER_OTLP_CERTIFICATE`` there and refuse a private CA.
    """
    import requests

    class Session(requests.Session):
        def merge_environment_settings(
            self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
        ) -> Any:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if verify is None and isinstance(self.verify, str):
                settings["verify"] = self.verify
            return settings

    return Session()


def _pipeline(signal: str, cfg: Config) -> Pipeline[Any]:
    s = cfg.export[signal]
    return Pipeline(
        signal,
        lambda: make_exporter(signal, s),
        endpoint=s.url,
        max_queue=s.max_queue,
        batch_size=s.batch_size,
        delay_s=s.delay_s,
        shutdown_timeout_s=cfg.shutdown_timeout_s,
        counters=counters[signal],
        wait_s=cfg.queue_full_wait_s,
    )


class ReliableSpanProcessor(SpanProcessor):
    """Sampled spans into a :class:`Pipeline` at their end."""

    def __init__(self, pipeline: Pipeline[ReadableSpan]) -> None:
        self.pipeline = pipeline

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is not None and ctx.trace_flags.sampled:
            self.pipeline.put(span)

    def shutdown(self) -> None:
        self.pipeline.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.pipeline.flush(timeout_millis / 1000)


class ReliableLogProcessor(LogRecordProcessor):
    """Log records (dashfrog events, captured logging) into a :class:`Pipeline`."""

    def __init__(self, pipeline: Pipeline[ReadableLogRecord]) -> None:
        self.pipeline = pipeline

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        # As the SDK's batch processor does: a frozen copy without the (possibly large) context.
        api_record = copy.copy(log_record.log_record)
        api_record.context = Context()
        self.pipeline.put(
            ReadableLogRecord(
                log_record=api_record,
                resource=log_record.resource or _EMPTY_RESOURCE,
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
        )

    def shutdown(self) -> None:
        self.pipeline.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.pipeline.flush(timeout_millis / 1000)


def span_processor(cfg: Config) -> ReliableSpanProcessor:
    return ReliableSpanProcessor(_pipeline("traces", cfg))


def log_processor(cfg: Config) -> ReliableLogProcessor:
    return ReliableLogProcessor(_pipeline("logs", cfg))


class CountingMetricExporter(MetricExporter):
    """Counts, quiets and reports metric exports; the reader does the periodic work.

    Metrics need no backlog: with the default cumulative temporality every export carries the
    totals since start, so the first export after an outage delivers everything that happened
    during it. With delta temporality the points of a failed export are lost and counted.
    """

    def __init__(self, make: Callable[[], MetricExporter], endpoint: str) -> None:
        self._make = make
        self._inner = make()
        self.endpoint = endpoint
        self._orphans: list[MetricExporter] = []
        temporality, aggregation = preferences(self._inner)
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        preferred = temporality or {}
        self._delta = AggregationTemporality.DELTA in preferred.values()
        _fork.method_in_child(self._after_fork)

    def _after_fork(self) -> None:
        # Same reason as Pipeline._after_fork: the parent's channel is the parent's.
        self._orphans.append(self._inner)
        self._inner = self._make()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        inner = self._inner
        ok, reason = call_quietly(lambda: inner.export(metrics_data, timeout_millis=timeout_millis))
        points = _points(metrics_data)
        if ok:
            counters["metrics"].add("exported", points)
            outage.recovered("metrics", self.endpoint)
            return MetricExportResult.SUCCESS
        counters["metrics"].add("failed", 1)
        if self._delta:
            counters["metrics"].add("dropped", points)
        state = "unreachable" if not reachable(self.endpoint) else "refusing data"
        outage.failed(
            "metrics", self.endpoint, reason, f"it is {state}; metrics retry next interval"
        )
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        call_quietly(lambda: self._inner.shutdown(timeout_millis=timeout_millis))


def _points(data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )


class _Reader(PeriodicExportingMetricReader):
    """A periodic reader whose second shutdown is silent.

    `setup.shutdown()` stops it first (its last collection exports the final values within
    the deadline), then detaches it with `MeterProvider.remove_metric_reader`, which calls
    `shutdown()` again: the SDK would log a warning for that.
    """

    _stopped = False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if not self._stopped:
            self._stopped = True
            super().shutdown(timeout_millis=timeout_millis, **kwargs)


def metric_reader(cfg: Config) -> PeriodicExportingMetricReader:
    s = cfg.export["metrics"]
    exporter = CountingMetricExporter(lambda: make_exporter("metrics", s), s.url)
    return _Reader(
        exporter,
        export_interval_millis=cfg.metric_interval_s * 1000,
        export_timeout_millis=cfg.metric_timeout_s * 1000,
    )


def reset_after_fork(provider: MeterProvider, reader: PeriodicExportingMetricReader) -> None:
    """In a forked child, start `reader` from empty aggregations.

    Without this the child would export the parent's cumulative totals as its own, and the
    backend would count everything the parent measured before the fork twice. Re-adding the
    reader to the measurement consumer gives it fresh storage (the SDK has no public reset).
    """
    refs = weakref.ref(provider), weakref.ref(reader)

    def reset() -> None:
        p, r = refs[0](), refs[1]()
        if p is not None and r is not None:
            fresh_storage(p, r)

    _fork.in_child(reset)
