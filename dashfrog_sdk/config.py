"""Every option in one place: `setup()` keywords over `DASHFROG_*` / `OTEL_*` variables over defaults.

A bad value is a `ValueError` at `setup()` naming the variable (or keyword) and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from dashfrog_sdk.timeutil import parse_duration

DEFAULT_STORE = os.path.join(".dashfrog", "flows.db")
# Where the CLI reads flows by default (a SQLite path or a ClickHouse/chDB URL). Unset, it reads
# DASHFROG_STORE (the SDK's write location), then DEFAULT_STORE.
READ_STORE_ENV = "DASHFROG_READ_STORE"
PROTOCOLS = ("grpc", "http/protobuf")
SIGNALS = ("traces", "logs", "metrics")
EXPORTERS = ("otlp", "console", "none")
# Batch variables per signal (metrics are exported by a periodic reader, not batched).
_BATCH_PREFIX = {"traces": "OTEL_BSP", "logs": "OTEL_BLRP"}
# The OTel SDK's queue default (2048) holds a couple of seconds of a busy service: too little to
# ride out a collector restart. A queued span or event costs about 2 KB, so 16384 of each bounds
# an outage's backlog at about 64 MB (measured by benchmarks/export.py).
DEFAULT_MAX_QUEUE = 16_384
DEFAULT_BATCH_SIZE = 512
DEFAULT_DELAY_MS = {"traces": 5000.0, "logs": 1000.0}  # the OTel spec's defaults
DEFAULT_CARDINALITY_LIMIT = 2000  # the OTel spec's default aggregation cardinality limit
# A full queue while the collector accepts data: the export thread is behind (many threads
# producing flat out), so the producer waits for it, at most this long (benchmarks/export.py,
# "threads": one batch exports in well under it). An outage never waits.
DEFAULT_QUEUE_FULL_WAIT_S = 1.0
MAX_QUEUE_FULL_WAIT_S = 10.0  # beyond, a "wait" is an outage the application sits through


@dataclass(frozen=True)
class SignalExport:
    """How one signal reaches its OTLP endpoint (only built when the signal has one)."""

    url: str  # gRPC: the endpoint; HTTP: the full URL with its /v1/<signal> path
    protocol: str
    timeout_s: float  # per export call, retries included
    max_queue: int  # items buffered while the collector is slow or down (traces/logs)
    batch_size: int
    delay_s: float  # how long a partial batch waits before it is sent
    certificate: bool = False  # a CA file is set for it (OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE)


@dataclass(frozen=True)
class Config:
    service_name: str | None
    endpoints: Mapping[str, str | None]  # per signal: the OTLP endpoint, or None
    protocol: str
    exporters: Mapping[str, str]  # per signal: otlp | console | none
    console: bool
    store: str | None  # SQLite path, or None when off
    store_max_age_s: float | None
    store_max_flows: int | None
    propagate_to: tuple[str, ...]  # host patterns; ("internal",) by default
    propagation_key: bytes | None
    capture_logging: bool
    shutdown_timeout_s: float
    explicit: frozenset[str] = frozenset()  # local outputs asked for by name: console, store
    export: Mapping[str, SignalExport] = field(default_factory=dict)  # signals with an endpoint
    metric_interval_s: float = 60.0
    metric_timeout_s: float = 30.0
    cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT  # attribute sets per metric instrument
    flow_metrics: bool = True
    handle_sigterm: bool = True
    # How old a dashfrog.sig may be when it arrives; None: no limit (DASHFROG_PROPAGATION_MAX_AGE)
    propagation_max_age_s: float | None = 7 * 86400.0
    propagators: str | None = None  # OTEL_PROPAGATORS, as given (None: the default set)
    capture_print: bool = False  # print() inside a flow becomes log records of it
    # Backpressure: how long a thread may wait for room in a full queue while the collector
    # accepts data (DASHFROG_QUEUE_FULL_WAIT); 0: drop at once, as when it does not.
    queue_full_wait_s: float = DEFAULT_QUEUE_FULL_WAIT_S

    @property
    def distributed(self) -> bool:
        """True when any signal goes to an OTLP endpoint (a collector)."""
        return any(self.endpoints.values())


def _per_signal(var: str) -> tuple[str, ...]:
    """`var` and its per-signal forms: OTEL_EXPORTER_OTLP_X -> ..._TRACES_X, ..._LOGS_X, ..."""
    head, tail = "OTEL_EXPORTER_OTLP_", var.removeprefix("OTEL_EXPORTER_OTLP_")
    return (var, *(f"{head}{s.upper()}_{tail}" for s in SIGNALS))


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def _switch(name: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "on", "true", "yes"):
        return True
    if text in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"{name} must be 'on' or 'off', got {value!r}")


def check_endpoint(name: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"{name} must be a URL like http://localhost:4317 (scheme http or https and a "
            f"host), got {value!r}"
        )
    try:
        parsed.port  # noqa: B018 - raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"{name} has an invalid port: {value!r}") from exc
    return value


def check_headers(name: str, value: str) -> dict[str, str]:
    """Parse `k=v,k2=v2` (values URL-encoded), as the OTLP exporter spec defines."""
    headers: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if (
            not sep
            or not key.strip()
            or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", key.strip())
        ):
            raise ValueError(
                f"{name} must be comma-separated key=value pairs (values URL-encoded), got "
                f"{item.strip()!r} in {value!r}"
            )
        headers[key.strip().lower()] = unquote(val.strip())
    return headers


def _duration(name: str, value: object) -> float | None:
    """Seconds, a duration in the one syntax of timeutil.parse_duration (``250ms``, ``30s``,
    ``15m``, ``12h``, ``7d``, ``1w``; the CLI's ``--since`` too), or None for ``off``."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    text = str(value).strip().lower()
    if text in ("off", "none", "0"):
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{name} must be a duration like 30m, 12h, 7d or 1w, or 'off', got {value!r}"
        ) from None


def _positive_int(name: str, value: object) -> int | None:
    if value is None or str(value).strip().lower() in ("off", "none", "0"):
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number <= 0:
        raise ValueError(f"{name} must be a positive integer or 'off', got {value!r}")
    return number


def _wait(name: str, value: object) -> float | None:
    """A short duration (``100ms``, ``0.05``, ``off``), never negative."""
    if isinstance(value, bool) or (
        isinstance(value, int | float) and not 0 <= value < float("inf")
    ):
        raise ValueError(f"{name} must be a duration like 100ms or 'off', got {value!r}")
    seconds = _duration(name, value)
    if seconds is not None and seconds > MAX_QUEUE_FULL_WAIT_S:
        raise ValueError(
            f"{name} must be at most {MAX_QUEUE_FULL_WAIT_S:g}s (or 'off'), got {value!r}"
        )
    return seconds


@dataclass(frozen=True)
class Option:
    """One `setup()` keyword: the variable it overrides, how both are parsed, the default."""

    keyword: str
    variable: str
    parse: Callable[[str, object], Any]  # (the keyword or variable to name, value) -> value
    default: object  # parsed like a value of the variable when it is a str
    doc: str


def _text(name: str, value: object) -> str | None:
    return str(value) if value is not None else None


def _as_is(name: str, value: object) -> object:
    return value  # parsed where it is used, by load() (several variables take part)


OPTIONS: dict[str, Option] = {
    o.keyword: o
    for o in (
        Option("service_name", "OTEL_SERVICE_NAME", _text, None, "the service's name"),
        Option("endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", _as_is, None, "OTLP collector URL"),
        Option("protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", _as_is, "grpc", "grpc|http/protobuf"),
        Option("console", "DASHFROG_CONSOLE", _switch, None, "on unless exporting"),
        Option("store", "DASHFROG_STORE", _as_is, None, "SQLite path, or off"),
        Option("store_max_age", "DASHFROG_STORE_MAX_AGE", _duration, "7d", "store retention"),
        Option("store_max_flows", "DASHFROG_STORE_MAX_FLOWS", _positive_int, "100000", "ditto"),
        Option("propagate_to", "DASHFROG_PROPAGATE_TO", _as_is, "internal", "host patterns"),
        Option("propagation_key", "DASHFROG_PROPAGATION_KEY", _as_is, None, "HMAC key"),
        Option("propagation_max_age", "DASHFROG_PROPAGATION_MAX_AGE", _as_is, "7d", "sig age"),
        Option("capture_logging", "DASHFROG_CAPTURE_LOGGING", _switch, "on", "flow logs"),
        Option("capture_print", "DASHFROG_CAPTURE_PRINT", _switch, "off", "print() in flows"),
        Option("shutdown_timeout", "DASHFROG_SHUTDOWN_TIMEOUT", _duration, "5s", "exit flush"),
        Option("flow_metrics", "DASHFROG_FLOW_METRICS", _switch, "on", "automatic metrics"),
        Option(
            "cardinality_limit", "DASHFROG_METRICS_CARDINALITY_LIMIT", _positive_int, "2000", ""
        ),
        Option("handle_sigterm", "DASHFROG_HANDLE_SIGTERM", _switch, "on", "SIGTERM handler"),
        Option("queue_full_wait", "DASHFROG_QUEUE_FULL_WAIT", _wait, "1s", "backpressure"),
    )
}
"""Every `setup()` keyword (the providers aside) and its variable; tests/config/test_config.py
checks `setup()`'s signature, and that each bad value names its keyword or variable."""


def _option(keyword: str, overrides: Mapping[str, Any]) -> Any:
    """The value of `keyword`: given to `setup()`, else its variable, else its default."""
    o = OPTIONS[keyword]
    given = overrides.get(keyword)
    if given is not None:
        return o.parse(keyword, given)
    raw = _env(o.variable)
    if raw is not None:
        return o.parse(o.variable, raw)
    return o.parse(o.variable, o.default) if isinstance(o.default, str) else o.default


def load(**overrides: Any) -> Config:
    """Build the configuration; `overrides` are `setup()` keywords (None = not given)."""
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise TypeError(f"setup() got unknown keyword(s): {', '.join(unknown)}")
    get = overrides.get
    protocol = get("protocol") or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    for signal in SIGNALS:
        per = _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        if per is not None and per not in PROTOCOLS:
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL must be one of "
                f"{', '.join(PROTOCOLS)}, got {per!r}"
            )
    endpoint = get("endpoint") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is not None:
        check_endpoint("endpoint" if get("endpoint") else "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    endpoints: dict[str, str | None] = {}
    exporters: dict[str, str] = {}
    per_signal: dict[str, bool] = {}
    for signal in SIGNALS:
        var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        own = _env(var) if not get("endpoint") else None
        if own is not None:
            check_endpoint(var, own)
        kind_var = f"OTEL_{signal.upper()}_EXPORTER"
        kind = (_env(kind_var) or "otlp").lower()
        if kind not in EXPORTERS:
            raise ValueError(f"{kind_var} must be one of {', '.join(EXPORTERS)}, got {kind!r}")
        exporters[signal] = kind
        endpoints[signal] = (own or endpoint) if kind == "otlp" else None
        per_signal[signal] = own is not None
    for var in _per_signal("OTEL_EXPORTER_OTLP_HEADERS"):
        if (value := _env(var)) is not None:
            check_headers(var, value)
    for var in _per_signal("OTEL_EXPORTER_OTLP_COMPRESSION"):
        if (value := _env(var)) is not None and value.lower() not in ("gzip", "deflate", "none"):
            raise ValueError(f"{var} must be gzip, deflate or none, got {value!r}")
    for base in ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"):
        for var in _per_signal(f"OTEL_EXPORTER_OTLP_{base}"):
            if (value := _env(var)) is not None and not os.path.isfile(value):
                raise ValueError(f"{var} names a file that does not exist: {value!r}")
    distributed = any(endpoints.values())

    console = _option("console", overrides)
    store_arg = get("store")
    if store_arg is False:
        store_arg = "off"
    store_value = store_arg if store_arg is not None else _env("DASHFROG_STORE")
    if store_value is None:
        store: str | None = None if distributed else DEFAULT_STORE
    elif str(store_value).strip().lower() in ("off", "none", "0", "false"):
        store = None
    else:
        store = os.fspath(store_value)

    propagate = get("propagate_to")
    if propagate is None:
        propagate = _env("DASHFROG_PROPAGATE_TO") or "internal"
    patterns = tuple(
        p.strip().lower()
        for p in (propagate.split(",") if isinstance(propagate, str) else propagate)
    )
    if not patterns or any(not p for p in patterns):
        raise ValueError(
            "DASHFROG_PROPAGATE_TO must be a comma-separated list of host patterns "
            f"(e.g. 'internal,*.corp.example'), got {propagate!r}"
        )
    if "none" in patterns and len(patterns) > 1:
        raise ValueError(
            "DASHFROG_PROPAGATE_TO: 'none' means nowhere and cannot be combined with other "
            f"patterns, got {propagate!r}"
        )
    key = get("propagation_key") or _env("DASHFROG_PROPAGATION_KEY")
    if key is not None and len(key) < 16:
        raise ValueError("DASHFROG_PROPAGATION_KEY must be at least 16 characters long")
    max_age_arg = get("propagation_max_age")
    max_age_text = _env("DASHFROG_PROPAGATION_MAX_AGE")
    if max_age_arg is not None and not isinstance(max_age_arg, str):
        if isinstance(max_age_arg, bool) or not isinstance(max_age_arg, int | float):
            raise TypeError(
                "setup(propagation_max_age=...) must be seconds, a duration like '7d', or 'off', "
                f"got {max_age_arg!r}"
            )
        if not max_age_arg > 0:
            raise ValueError(
                f"setup(propagation_max_age=...) must be positive (or 'off'), got {max_age_arg!r}"
            )
    max_age = _duration(
        "propagation_max_age" if max_age_arg is not None else "DASHFROG_PROPAGATION_MAX_AGE",
        max_age_arg if max_age_arg is not None else (max_age_text or "7d"),
    )
    capture = _option("capture_logging", overrides)
    capture_print = _option("capture_print", overrides)
    timeout = _option("shutdown_timeout", overrides)
    cardinality = _option("cardinality_limit", overrides)
    flow_metrics = _option("flow_metrics", overrides)
    sigterm = _option("handle_sigterm", overrides)
    queue_full_wait = _option("queue_full_wait", overrides)

    return Config(
        service_name=_option("service_name", overrides),
        endpoints=endpoints,
        protocol=protocol,
        exporters=exporters,
        console=(not distributed) if console is None else console,
        store=store,
        store_max_age_s=_option("store_max_age", overrides),
        store_max_flows=_option("store_max_flows", overrides),
        propagate_to=patterns,
        propagation_key=key.encode() if isinstance(key, str) else key,
        capture_logging=True if capture is None else capture,
        shutdown_timeout_s=timeout or 5.0,
        explicit=frozenset(
            name
            for name, var in (("console", "DASHFROG_CONSOLE"), ("store", "DASHFROG_STORE"))
            if get(name) is not None or _env(var) is not None
        ),
        export=_export_settings(endpoints, protocol, get("protocol") is not None, per_signal),
        metric_interval_s=_millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000) / 1000,
        metric_timeout_s=_millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000) / 1000,
        cardinality_limit=cardinality or DEFAULT_CARDINALITY_LIMIT,
        flow_metrics=True if flow_metrics is None else flow_metrics,
        handle_sigterm=True if sigterm is None else sigterm,
        propagation_max_age_s=max_age,
        propagators=_env("OTEL_PROPAGATORS"),
        capture_print=bool(capture_print),
        queue_full_wait_s=queue_full_wait or 0.0,
    )


def _millis(var: str, default: float, *, zero_ok: bool = False) -> float:
    """A duration variable in milliseconds, as the OTel spec defines them all."""
    raw = _env(var)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0 or (value == 0 and not zero_ok) or value != value:
        raise ValueError(f"{var} must be a positive number of milliseconds, got {raw!r}")
    return value


def _count(var: str, default: int) -> int:
    raw = _env(var)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{var} must be a positive integer, got {raw!r}")
    return value


def _export_settings(
    endpoints: Mapping[str, str | None],
    protocol: str,
    protocol_given: bool,
    per_signal: Mapping[str, bool],
) -> dict[str, SignalExport]:
    settings: dict[str, SignalExport] = {}
    for signal in SIGNALS:
        endpoint = endpoints[signal]
        if endpoint is None:
            continue
        up = signal.upper()
        proto = (
            protocol if protocol_given else (_env(f"OTEL_EXPORTER_OTLP_{up}_PROTOCOL") or protocol)
        )
        url = endpoint
        if proto == "http/protobuf" and not per_signal[signal]:
            # Only the base endpoint gets the signal path; a per-signal one is used as given.
            url = endpoint.rstrip("/") + "/v1/" + signal
        # The spec says milliseconds; the Python OTLP exporters (1.45) read these variables as
        # seconds, so dashfrog parses them itself and passes seconds explicitly.
        generic = _millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)
        timeout_ms = _millis(f"OTEL_EXPORTER_OTLP_{up}_TIMEOUT", generic)
        prefix = _BATCH_PREFIX.get(signal)
        if prefix is None:
            max_queue, batch, delay_ms = 0, 0, 0.0
        else:
            max_queue = _count(f"{prefix}_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE)
            # The spec: a batch larger than the queue is clamped to the queue size.
            batch = min(_count(f"{prefix}_MAX_EXPORT_BATCH_SIZE", DEFAULT_BATCH_SIZE), max_queue)
            delay_ms = _millis(f"{prefix}_SCHEDULE_DELAY", DEFAULT_DELAY_MS[signal], zero_ok=True)
        certificate = any(
            _env(var)
            for var in ("OTEL_EXPORTER_OTLP_CERTIFICATE", f"OTEL_EXPORTER_OTLP_{up}_CERTIFICATE")
        )
        settings[signal] = SignalExport(
            url, proto, timeout_ms / 1000, max_queue, batch, delay_ms / 1000, certificate
        )
    return settings
