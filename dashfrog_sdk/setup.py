"""Provider wiring: `setup()`, `flush()`, `shutdown()`.

`setup()` is optional (the first `flow.start` runs it from the environment) and idempotent. It
never replaces SDK providers the application already installed (its own setup,
`opentelemetry-instrument`, a test fixture): it adds its processors to them. When it creates
the providers itself, it also adds the exporters: OTLP when an endpoint is configured, else the
console and the local flow store.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import _logs, metrics, propagate, trace
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from dashfrog_sdk import config as config_module
from dashfrog_sdk import conventions as c
from dashfrog_sdk import events
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk.config import Config
from dashfrog_sdk.console import ConsoleSink
from dashfrog_sdk.processors import FanOutLogProcessor, FlowSpanProcessor
from dashfrog_sdk.propagation import build_global_propagator

logger = logging.getLogger("dashfrog_sdk")

__all__ = ["flush", "setup", "shutdown"]


@dataclass
class _Installed:
    config: Config
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    meter_provider: MeterProvider | None
    owns: set[str] = field(default_factory=set)  # signals whose provider we created
    sinks: list[events.Sink] = field(default_factory=list)
    extras: list[Any] = field(default_factory=list)  # objects with shutdown() (readers, handlers)


_lock = threading.RLock()
_installed: _Installed | None = None
_span_fanouts: dict[int, FlowSpanProcessor] = {}
_log_fanouts: dict[int, FanOutLogProcessor] = {}
_atexit_registered = False


def _resource(cfg: Config) -> Resource:
    attrs = {SERVICE_NAME: cfg.service_name} if cfg.service_name else {}
    return Resource.create(attrs)  # also reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES


def setup(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    console: bool | None = None,
    store: str | os.PathLike[str] | bool | None = None,
    store_max_age: str | float | None = None,
    store_max_flows: int | None = None,
    propagate_to: str | list[str] | tuple[str, ...] | None = None,
    propagation_key: str | bytes | None = None,
    capture_logging: bool | None = None,
    shutdown_timeout: float | None = None,
    tracer_provider: TracerProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Configure dashfrog_sdk. Optional, idempotent; every keyword overrides its variable.

    Reads `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_*`, `OTEL_*_EXPORTER`, `OTEL_PROPAGATORS`,
    `DASHFROG_STORE`, `DASHFROG_CONSOLE`, `DASHFROG_PROPAGATE_TO`, `DASHFROG_PROPAGATION_KEY`.
    A bad value raises `ValueError` naming the variable.

    Example:
        >>> setup(service_name="checkout")   # OTLP if OTEL_EXPORTER_OTLP_ENDPOINT is set
    """
    global _installed, _atexit_registered
    given = {k: v for k, v in locals().items() if v is not None}
    cfg = config_module.load(**given)
    with _lock:
        if _installed is not None:
            if given and cfg != _installed.config:
                logger.warning(
                    "dashfrog_sdk: setup() already ran; the new arguments are ignored "
                    "(call dashfrog_sdk.shutdown() first to reconfigure)"
                )
            return
        inst = _Installed(
            cfg,
            _tracer_provider(cfg, tracer_provider),
            _logger_provider(cfg, logger_provider),
            meter_provider,
        )
        inst.owns = {
            signal
            for signal, provider in (
                ("traces", inst.tracer_provider),
                ("logs", inst.logger_provider),
            )
            if getattr(provider, "_dashfrog_owned", False)
        }
        _wire(inst)
        _installed = inst
        runtime.tracer = inst.tracer_provider.get_tracer(c.SCOPE_NAME, _version())
        runtime.configured = True
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True


def _version() -> str:
    from dashfrog_sdk import __version__

    return __version__


def _tracer_provider(cfg: Config, explicit: TracerProvider | None) -> TracerProvider:
    if explicit is not None:
        return explicit
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=_resource(cfg))
    provider._dashfrog_owned = True  # type: ignore[attr-defined]
    trace.set_tracer_provider(provider)
    return provider


def _logger_provider(cfg: Config, explicit: LoggerProvider | None) -> LoggerProvider:
    if explicit is not None:
        return explicit
    current = _logs.get_logger_provider()
    if isinstance(current, LoggerProvider):
        return current
    provider = LoggerProvider(resource=_resource(cfg))
    provider._dashfrog_owned = True  # type: ignore[attr-defined]
    _logs.set_logger_provider(provider)
    return provider


def _fanouts(inst: _Installed) -> tuple[FlowSpanProcessor, FanOutLogProcessor]:
    tp, lp = inst.tracer_provider, inst.logger_provider
    span_fanout = _span_fanouts.get(id(tp))
    if span_fanout is None:
        span_fanout = _span_fanouts[id(tp)] = FlowSpanProcessor()
        tp.add_span_processor(span_fanout)
    log_fanout = _log_fanouts.get(id(lp))
    if log_fanout is None:
        log_fanout = _log_fanouts[id(lp)] = FanOutLogProcessor()
        lp.add_log_record_processor(log_fanout)
    span_fanout.enabled = True
    return span_fanout, log_fanout


def _wire(inst: _Installed) -> None:
    cfg = inst.config
    span_fanout, log_fanout = _fanouts(inst)
    span_children: list[SpanProcessor] = []
    log_children: list[LogRecordProcessor] = []
    explicit = cfg.explicit
    # Exporters go on providers we created; an application's own providers export already.
    if "traces" in inst.owns and cfg.endpoints["traces"]:
        span_children.append(BatchSpanProcessor(_exporter("traces", cfg)))
    if "logs" in inst.owns and cfg.endpoints["logs"]:
        log_children.append(BatchLogRecordProcessor(_exporter("logs", cfg)))
    if cfg.store and ("traces" in inst.owns or "store" in explicit):
        from dashfrog_sdk.store.exporter import build_processors

        sp, lp = build_processors(
            cfg.store, max_age_s=cfg.store_max_age_s, max_flows=cfg.store_max_flows
        )
        span_children.append(sp)
        log_children.append(lp)
    span_fanout.children = tuple(span_children)
    log_fanout.children = tuple(log_children)

    emitter = events.OtelEventEmitter(inst.logger_provider.get_logger(c.SCOPE_NAME, _version()))
    inst.sinks.append(emitter)
    if cfg.console and ("traces" in inst.owns or "console" in explicit):
        inst.sinks.append(ConsoleSink())
    for sink in inst.sinks:
        events.add_sink(sink)
    _wire_optional(inst)
    propagate.set_global_textmap(
        build_global_propagator(
            cfg.propagate_to, cfg.propagation_key, os.environ.get("OTEL_PROPAGATORS")
        )
    )
    events.start()


def _wire_optional(inst: _Installed) -> None:
    """Python logging capture and flow metrics, when their modules are present."""
    cfg = inst.config
    if cfg.capture_logging:
        try:
            from dashfrog_sdk.logs import install_logging_capture, uninstall_logging_capture
        except ImportError:  # pragma: no cover
            return
        install_logging_capture(inst.logger_provider)
        inst.extras.append(uninstall_logging_capture)


def _exporter(signal: str, cfg: Config) -> Any:
    endpoint = cfg.endpoints[signal]
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL") or cfg.protocol
    per_signal = bool(os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"))
    if protocol == "grpc":
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=endpoint)
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=endpoint)
    path = {"traces": "v1/traces", "logs": "v1/logs", "metrics": "v1/metrics"}[signal]
    url = endpoint if per_signal or endpoint is None else endpoint.rstrip("/") + "/" + path
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HTTPSpanExporter,
        )

        return HTTPSpanExporter(endpoint=url)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HTTPLogExporter,
    )

    return HTTPLogExporter(endpoint=url)


def flush(timeout_s: float = 5.0) -> bool:
    """Deliver everything produced so far: pending events, then the providers' exporters."""
    events.flush()
    inst = _installed
    if inst is None:
        return True
    millis = int(timeout_s * 1000)
    ok = inst.tracer_provider.force_flush(millis)
    ok = inst.logger_provider.force_flush(millis) and ok
    if inst.meter_provider is not None:
        ok = inst.meter_provider.force_flush(millis) and ok
    return bool(ok)


def shutdown() -> None:
    """Flush and undo `setup()`; a later `setup()` (or flow) configures afresh."""
    global _installed
    with _lock:
        inst = _installed
        if inst is None:
            return
        flush(inst.config.shutdown_timeout_s)
        for sink in inst.sinks:
            events.remove_sink(sink)
        for extra in inst.extras:
            extra()
        span_fanout = _span_fanouts.get(id(inst.tracer_provider))
        log_fanout = _log_fanouts.get(id(inst.logger_provider))
        if span_fanout is not None:
            span_fanout.shutdown()
        if log_fanout is not None:
            log_fanout.shutdown()
        # Providers stay up: the global ones cannot be replaced once set, so a later setup()
        # reuses them; the SDK shuts them down itself at interpreter exit.
        _installed = None
        runtime.configured = False
        runtime.tracer = trace.NoOpTracer()


def installed_config() -> Config | None:
    """The configuration in force, or None before `setup()`."""
    inst = _installed
    return inst.config if inst is not None else None


def _at_exit() -> None:
    # What was produced is flushed within the shutdown timeout; the SDK's own atexit hooks
    # (registered earlier, so they run later) then shut the providers down.
    try:
        shutdown()
    except Exception:  # never raise at interpreter exit
        logger.debug("dashfrog_sdk: error during shutdown at exit", exc_info=True)
