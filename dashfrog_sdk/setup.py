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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import _logs, propagate, trace
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from dashfrog_sdk import _threads, diagnostics, metrics
from dashfrog_sdk import config as config_module
from dashfrog_sdk import conventions as c
from dashfrog_sdk._otel import log_records
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk._version import __version__
from dashfrog_sdk.config import Config
from dashfrog_sdk.exporting import counts, otlp
from dashfrog_sdk.exporting.pipeline import Pipeline, report_lost_at_exit
from dashfrog_sdk.ids import PrivateIdGenerator
from dashfrog_sdk.lifecycle import bus as events
from dashfrog_sdk.lifecycle import exit as exit_module
from dashfrog_sdk.processors import FanOutLogProcessor, FlowSpanProcessor, drain_before_flush
from dashfrog_sdk.propagation import build_global_propagator
from dashfrog_sdk.sinks.console import ConsoleSink
from dashfrog_sdk.sinks.flow_metrics import FlowMetrics
from dashfrog_sdk.sinks.otel_logs import OtelEventEmitter

logger = logging.getLogger("dashfrog_sdk")

__all__ = ["flush", "setup", "shutdown"]


@dataclass
class _Installed:
    config: Config
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    meter_provider: otel_metrics.MeterProvider | None  # None: record into the global one
    owns: set[str] = field(default_factory=set)  # signals whose provider we created
    sinks: list[events.Sink] = field(default_factory=list)
    extras: list[Any] = field(default_factory=list)  # callables undoing what setup() installed
    pipelines: list[Pipeline[Any]] = field(default_factory=list)  # our OTLP span/log queues
    reader: PeriodicExportingMetricReader | None = None  # our OTLP metric reader


_lock = threading.RLock()
_installed: _Installed | None = None
_span_fanouts: dict[int, FlowSpanProcessor] = {}
_log_fanouts: dict[int, FanOutLogProcessor] = {}
_atexit_registered = False
_exiting = False  # set at interpreter exit: a late flow in a daemon thread must not set up again


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
    propagation_max_age: str | float | None = None,
    capture_logging: bool | None = None,
    capture_print: bool | None = None,
    shutdown_timeout: float | None = None,
    flow_metrics: bool | None = None,
    cardinality_limit: int | None = None,
    handle_sigterm: bool | None = None,
    queue_full_wait: str | float | None = None,
    tracer_provider: TracerProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    meter_provider: otel_metrics.MeterProvider | None = None,
) -> None:
    """Configure dashfrog_sdk. Optional, idempotent; every keyword overrides its variable.

    Reads `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_*`, `OTEL_*_EXPORTER`, `OTEL_PROPAGATORS`,
    `OTEL_BSP_*`, `OTEL_BLRP_*`, `OTEL_METRIC_EXPORT_*`, `DASHFROG_STORE`, `DASHFROG_CONSOLE`,
    `DASHFROG_STORE_MAX_AGE`, `DASHFROG_STORE_MAX_FLOWS`, `DASHFROG_PROPAGATE_TO`,
    `DASHFROG_PROPAGATION_KEY`, `DASHFROG_PROPAGATION_MAX_AGE`, `DASHFROG_CAPTURE_LOGGING`,
    `DASHFROG_CAPTURE_PRINT`,
    `DASHFROG_SHUTDOWN_TIMEOUT`, `DASHFROG_FLOW_METRICS`, `DASHFROG_METRICS_CARDINALITY_LIMIT`,
    `DASHFROG_HANDLE_SIGTERM`, `DASHFROG_QUEUE_FULL_WAIT` (one table: `dashfrog_sdk.config.OPTIONS`). A bad value raises
    `ValueError` naming the variable or keyword; an unknown keyword raises `TypeError`.

    Example:
        >>> setup(service_name="checkout")   # OTLP if OTEL_EXPORTER_OTLP_ENDPOINT is set
    """
    global _installed, _atexit_registered
    # The keywords of config.OPTIONS (a test checks this signature against that table).
    given = {k: v for k, v in locals().items() if k in config_module.OPTIONS and v is not None}
    cfg = config_module.load(**given)
    if _exiting:
        return
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
            _meter_provider(cfg, meter_provider),
        )
        inst.owns = {
            signal
            for signal, provider in (
                ("traces", inst.tracer_provider),
                ("logs", inst.logger_provider),
                ("metrics", inst.meter_provider),
            )
            if getattr(provider, "_dashfrog_owned", False)
        }
        _wire(inst)
        _installed = inst
        runtime.tracer = inst.tracer_provider.get_tracer(c.SCOPE_NAME, __version__)
        runtime.configured = True
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True


P = TypeVar("P", TracerProvider, LoggerProvider, MeterProvider)


def _adopt(
    current: object, kind: type[P], make: Callable[[], P], install: Callable[[P], None]
) -> P:
    """The application's SDK provider if it installed one; else a new one of ours, installed."""
    if isinstance(current, kind):
        return current
    provider = make()
    provider._dashfrog_owned = True  # type: ignore[attr-defined]
    install(provider)
    return provider


def _tracer_provider(cfg: Config, explicit: TracerProvider | None) -> TracerProvider:
    if explicit is not None:
        return explicit
    return _adopt(
        trace.get_tracer_provider(),
        TracerProvider,
        lambda: TracerProvider(resource=_resource(cfg), id_generator=PrivateIdGenerator()),
        trace.set_tracer_provider,
    )


def _logger_provider(cfg: Config, explicit: LoggerProvider | None) -> LoggerProvider:
    if explicit is not None:
        return explicit
    return _adopt(
        _logs.get_logger_provider(),
        LoggerProvider,
        lambda: LoggerProvider(resource=_resource(cfg)),
        _logs.set_logger_provider,
    )


def _meter_provider(
    cfg: Config, explicit: otel_metrics.MeterProvider | None
) -> otel_metrics.MeterProvider | None:
    if explicit is not None:
        return explicit
    current = otel_metrics.get_meter_provider()
    if not isinstance(current, MeterProvider) and "metrics" not in cfg.export:
        return None  # nowhere to send metrics: instruments stay no-ops until the app sets one
    # No atexit hook of its own: our exit handler flushes and stops our reader within the
    # shutdown timeout (the SDK's would export once more, and warn about the stopped reader).
    return _adopt(
        current,
        MeterProvider,
        lambda: MeterProvider(resource=_resource(cfg), shutdown_on_exit=False),
        otel_metrics.set_meter_provider,
    )


def _fanouts(inst: _Installed) -> tuple[FlowSpanProcessor, FanOutLogProcessor]:
    tp, lp = inst.tracer_provider, inst.logger_provider
    span_fanout = _span_fanouts.get(id(tp))
    if span_fanout is None:
        span_fanout = _span_fanouts[id(tp)] = FlowSpanProcessor()
        tp.add_span_processor(span_fanout)
        drain_before_flush(tp)
    log_fanout = _log_fanouts.get(id(lp))
    if log_fanout is None:
        log_fanout = _log_fanouts[id(lp)] = FanOutLogProcessor()
        lp.add_log_record_processor(log_fanout)
        drain_before_flush(lp)
    span_fanout.enabled = True
    return span_fanout, log_fanout


def _wire(inst: _Installed) -> None:
    cfg = inst.config
    span_fanout, log_fanout = _fanouts(inst)
    span_children: list[SpanProcessor] = []
    log_children: list[LogRecordProcessor] = []
    explicit = cfg.explicit
    store_sink: events.Sink | None = None
    # The store first: fan-outs flush children in order, and the local store's flush is quick
    # while the OTLP one may wait for a collector that is down.
    if cfg.store and ("traces" in inst.owns or "store" in explicit):
        from dashfrog_sdk.store.exporter import build_processors
        from dashfrog_sdk.store.processor import StoreEventSink

        sp, lp = build_processors(
            cfg.store, max_age_s=cfg.store_max_age_s, max_flows=cfg.store_max_flows
        )
        span_children.append(sp)
        log_children.append(lp)
        # dashfrog's events reach the store straight from the bus (StoreEventSink).
        store_sink = StoreEventSink(sp.queue, _service_name(inst.logger_provider))
    # Exporters go on providers we created; an application's own providers export already.
    if "traces" in inst.owns and "traces" in cfg.export:
        span_processor = otlp.span_processor(cfg)
        span_children.append(span_processor)
        inst.pipelines.append(span_processor.pipeline)
    if "logs" in inst.owns and "logs" in cfg.export:
        log_processor = otlp.log_processor(cfg)
        log_children.append(log_processor)
        inst.pipelines.append(log_processor.pipeline)
    span_fanout.children = tuple(span_children)
    log_fanout.children = tuple(log_children)
    _wire_metrics(inst)

    if store_sink is not None:
        inst.sinks.append(store_sink)
    emitter = OtelEventEmitter(
        inst.logger_provider.get_logger(c.SCOPE_NAME, __version__),
        log_records.needed_by(inst.logger_provider, log_fanout),
    )
    inst.sinks.append(emitter)
    if cfg.flow_metrics:
        inst.sinks.append(_flow_metrics())
    if cfg.console and ("traces" in inst.owns or "console" in explicit):
        inst.sinks.append(ConsoleSink())
    for sink in inst.sinks:
        events.add_sink(sink)
    _wire_optional(inst)
    propagate.set_global_textmap(
        build_global_propagator(
            cfg.propagate_to,
            cfg.propagation_key,
            cfg.propagators,
            cfg.propagation_max_age_s,
        )
    )
    if cfg.handle_sigterm and exit_module.install_sigterm():
        inst.extras.append(exit_module.uninstall_sigterm)
    events.set_outlets([p for p in inst.pipelines if p.signal == "logs"])
    events.start(cfg.queue_full_wait_s)


def _service_name(provider: LoggerProvider) -> str | None:
    """The `service.name` of what `provider`'s loggers emit (the store's event rows carry it)."""
    value = provider.resource.attributes.get(SERVICE_NAME)
    return None if value is None else str(value)


def _wire_metrics(inst: _Installed) -> None:
    cfg, provider = inst.config, inst.meter_provider
    if isinstance(provider, MeterProvider) and "metrics" in inst.owns and "metrics" in cfg.export:
        inst.reader = otlp.metric_reader(cfg)
        provider.add_metric_reader(inst.reader)
        otlp.reset_after_fork(provider, inst.reader)
    if provider is not None:
        counts.register_metrics(provider)
    metrics.configure(provider, cfg.cardinality_limit)


_flow_metrics_sink: FlowMetrics | None = None


def _flow_metrics() -> FlowMetrics:
    global _flow_metrics_sink
    if _flow_metrics_sink is None:  # one set of instruments for the life of the process
        _flow_metrics_sink = FlowMetrics()
    return _flow_metrics_sink


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
    if cfg.capture_print:
        from dashfrog_sdk.logs import install_print_capture, uninstall_print_capture

        install_print_capture(inst.logger_provider)
        inst.extras.append(uninstall_print_capture)


def flush(timeout_s: float = 5.0) -> bool:
    """Deliver everything produced so far, within `timeout_s` seconds in all.

    Pending events first, then every signal in parallel. Returns False if something could not
    be delivered in time (the collector is down: it stays queued, and is retried).
    """
    # The deadline first: delivering the pending events is part of the flush. This thread is
    # one of dashfrog's own meanwhile: a full queue drops instead of waiting (backpressure
    # must not take a flush past its timeout).
    deadline = time.monotonic() + timeout_s
    with _threads.own():
        events.flush(deadline)
        inst = _installed
        if inst is None:
            return True
        return _flush(inst, deadline, metrics_too=True)


def _flush(inst: _Installed, deadline: float, *, metrics_too: bool) -> bool:
    targets = [(p, p.kick()) for p in inst.pipelines]  # all signals export at once
    ok = all([p.wait(target, deadline) for p, target in targets])

    def ms() -> int:
        return max(0, int((deadline - time.monotonic()) * 1000))

    # The application's own processors, and the store's.
    ok = inst.tracer_provider.force_flush(ms()) and ok
    ok = inst.logger_provider.force_flush(ms()) and ok
    provider = inst.meter_provider
    if metrics_too and isinstance(provider, MeterProvider):
        ok = _bounded_call(lambda: provider.force_flush(ms()), deadline) and ok
    return bool(ok)


def _bounded_call(fn: Callable[[], bool], deadline: float) -> bool:
    """Run `fn` on a helper thread, waiting until `deadline` at most.

    A metric export against a dead collector takes the exporter's full timeout, whatever
    timeout it is given (the OTLP metric exporters ignore theirs): the caller must not wait
    longer than it asked to.
    """
    result: list[bool] = []
    thread = threading.Thread(
        target=_threads.target(lambda: result.append(bool(fn()))),
        name="dashfrog-flush",
        daemon=True,
    )
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    return bool(result and result[0])


def shutdown() -> None:
    """Flush and undo `setup()`; a later `setup()` (or flow) configures afresh.

    Bounded by the shutdown timeout (`DASHFROG_SHUTDOWN_TIMEOUT`, default 5 s) in all: what the
    collector has not accepted by then is dropped and counted in `stats()`. An error inside
    is the SDK's, never the caller's: warned once and counted (`shutdown.errors`).
    """
    with diagnostics.capture_internal_errors("shutdown.errors", "shutdown()"):
        _shutdown(at_exit=False)


def _shutdown(*, at_exit: bool) -> None:
    global _installed
    with _lock:
        inst = _installed
        if inst is None:
            return
        deadline = time.monotonic() + inst.config.shutdown_timeout_s
        # From now on no thread waits for room in a full queue (backpressure): the shutdown
        # keeps to its timeout, and what does not fit is dropped and counted.
        events.stop_waiting()
        for pipeline in inst.pipelines:
            pipeline.stop_waiting()
        try:
            with _threads.own():
                _shutdown_within(inst, deadline, at_exit=at_exit)
            events.set_outlets([])
        finally:
            # A later setup() waits again, even if an exception cut this shutdown short (the
            # lifecycle bus outlives setup: left stopped, it would never wait for room again).
            events.stop_waiting(False)
        _installed = None
        runtime.configured = False
        runtime.tracer = trace.NoOpTracer()


def _shutdown_within(inst: _Installed, deadline: float, *, at_exit: bool) -> None:
    if at_exit:
        events.flush()  # the tracker learns of every start and end recorded so far
        exit_module.open_flows.close_all("the process exited while the flow was running")
    events.flush()
    _flush(inst, deadline, metrics_too=False)
    for pipeline in inst.pipelines:  # what is left now is lost: count it
        pipeline.shutdown(deadline, report=False)
    report_lost_at_exit(inst.pipelines)  # one line for every signal
    if inst.reader is not None:
        _stop_reader(inst, deadline)
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


def _stop_reader(inst: _Installed, deadline: float) -> None:
    reader, provider = inst.reader, inst.meter_provider
    assert reader is not None and isinstance(provider, MeterProvider)
    remaining = max(0.0, deadline - time.monotonic())
    # The reader's last collection exports the final values, then its exporter stops.
    reader.shutdown(timeout_millis=remaining * 1000)
    thread = getattr(reader, "_daemon_thread", None)
    if thread is None or not thread.is_alive():
        # Detach it so a later setup() can add its own; a thread still exporting would fail
        # on a detached reader, so that one is left attached (the process is exiting anyway).
        provider.remove_metric_reader(reader)
    inst.reader = None


def installed_config() -> Config | None:
    """The configuration in force, or None before `setup()`."""
    inst = _installed
    return inst.config if inst is not None else None


@diagnostics.capture_internal_errors("shutdown.errors", "the shutdown at exit")
def _at_exit() -> None:
    # What was produced is flushed within the shutdown timeout; the SDK's own atexit hooks
    # (registered earlier, so they run later) then shut the providers down.
    global _exiting
    _exiting = True
    _shutdown(at_exit=True)


def installed_providers() -> tuple[TracerProvider, LoggerProvider] | None:
    """The tracer and logger providers dashfrog_sdk writes to, or None before `setup()`."""
    inst = _installed
    return (inst.tracer_provider, inst.logger_provider) if inst is not None else None


# The composition root registers itself: the first flow runs `setup()` through the runtime,
# which therefore need not import this module (and everything it wires) itself.
runtime.register_setup(setup)
