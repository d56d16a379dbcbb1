"""Configuration: bad values of the variables and keywords are a ValueError at setup() naming the variable;
good values become the settings the exporters get (per-signal forms first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dashfrog_sdk import config
from tests.export.conftest import APP, ROOT, app_env

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith(("OTEL_", "DASHFROG_")):
            monkeypatch.delenv(key)


BAD = [
    # invalid endpoint URLs
    (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
        "OTEL_EXPORTER_OTLP_ENDPOINT must be a URL",
    ),
    (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector"},
        "OTEL_EXPORTER_OTLP_ENDPOINT must be a URL",
    ),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://"}, "OTEL_EXPORTER_OTLP_ENDPOINT must be a URL"),
    (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:43x7"},
        "OTEL_EXPORTER_OTLP_ENDPOINT has an invalid port",
    ),
    (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:99999"},
        "OTEL_EXPORTER_OTLP_ENDPOINT has an invalid port",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "localhost/v1/logs"},
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT must be a URL",
    ),
    # unknown protocols
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        "OTEL_EXPORTER_OTLP_PROTOCOL must be one of grpc, http/protobuf",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"},
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL must be one of",
    ),
    # malformed headers
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_HEADERS": "api-key"},
        "OTEL_EXPORTER_OTLP_HEADERS must be comma-separated key=value",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_HEADERS": "=secret"},
        "OTEL_EXPORTER_OTLP_HEADERS must be comma-separated key=value",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_HEADERS": "a b=c"},
        "OTEL_EXPORTER_OTLP_HEADERS must be comma-separated key=value",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-key:1"},
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS must be comma-separated",
    ),
    # the rest of the OTLP family
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
        "OTEL_EXPORTER_OTLP_COMPRESSION must be gzip, deflate or none",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "br"},
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION must be gzip",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nope/ca.pem"},
        "OTEL_EXPORTER_OTLP_CERTIFICATE names a file that does not exist",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "/nope/k.pem"},
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY names a file",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
        "OTEL_EXPORTER_OTLP_TIMEOUT must be a positive number of milliseconds",
    ),
    (
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "0"},
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT must be a positive",
    ),
    # queues, batches, intervals
    (
        {**ENDPOINT, "OTEL_BSP_MAX_QUEUE_SIZE": "lots"},
        "OTEL_BSP_MAX_QUEUE_SIZE must be a positive integer",
    ),
    (
        {**ENDPOINT, "OTEL_BLRP_MAX_QUEUE_SIZE": "-5"},
        "OTEL_BLRP_MAX_QUEUE_SIZE must be a positive integer",
    ),
    (
        {**ENDPOINT, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "0"},
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE must be a positive integer",
    ),
    (
        {**ENDPOINT, "OTEL_BLRP_SCHEDULE_DELAY": "soon"},
        "OTEL_BLRP_SCHEDULE_DELAY must be a positive number of milliseconds",
    ),
    (
        {**ENDPOINT, "OTEL_METRIC_EXPORT_INTERVAL": "0"},
        "OTEL_METRIC_EXPORT_INTERVAL must be a positive number",
    ),
    (
        {"DASHFROG_METRICS_CARDINALITY_LIMIT": "many"},
        "DASHFROG_METRICS_CARDINALITY_LIMIT must be a positive integer",
    ),
    ({"DASHFROG_FLOW_METRICS": "maybe"}, "DASHFROG_FLOW_METRICS must be 'on' or 'off'"),
    ({"DASHFROG_HANDLE_SIGTERM": "sure"}, "DASHFROG_HANDLE_SIGTERM must be 'on' or 'off'"),
]


@pytest.mark.parametrize(
    ("env", "message"), BAD, ids=[m.split()[0] + f"-{i}" for i, (_, m) in enumerate(BAD)]
)
def test_bad_variable_is_a_value_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        config.load()


def test_setup_raises_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, str(APP), "--script", "import dashfrog_sdk; dashfrog_sdk.setup()"],
        env=app_env(
            None, OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4317", OTEL_EXPORTER_OTLP_HEADERS="k"
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "ValueError: OTEL_EXPORTER_OTLP_HEADERS must be comma-separated key=value" in proc.stderr


def test_endpoints_and_protocols_per_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:9000/custom/path")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "700")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "300")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000")  # clamped to the queue
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "15000")
    cfg = config.load()
    traces, logs, metrics = cfg.export["traces"], cfg.export["logs"], cfg.export["metrics"]
    assert (traces.protocol, traces.url, traces.timeout_s) == ("grpc", "https://traces:4317", 2.5)
    assert (logs.protocol, logs.url, logs.timeout_s) == (
        "http/protobuf",
        "http://collector:4318/v1/logs",
        0.7,
    )
    assert metrics.url == "http://metrics:9000/custom/path"  # a per-signal URL is used as given
    assert (traces.max_queue, traces.batch_size, traces.delay_s) == (300, 300, 5.0)
    assert (logs.max_queue, logs.batch_size, logs.delay_s) == (config.DEFAULT_MAX_QUEUE, 512, 1.0)
    assert cfg.metric_interval_s == 15.0


def test_keywords_override_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("DASHFROG_FLOW_METRICS", "on")
    cfg = config.load(
        endpoint="http://c:4318", protocol="http/protobuf", flow_metrics=False, cardinality_limit=50
    )
    assert cfg.export["traces"].protocol == "http/protobuf"  # the keyword wins over every variable
    assert cfg.export["traces"].url == "http://c:4318/v1/traces"
    assert cfg.flow_metrics is False and cfg.cardinality_limit == 50
    assert config.load().export == {}  # no endpoint: nothing exported over OTLP


# -- the option table --------------------------------------------------------------------------

# A bad value for each option of config.OPTIONS; None: any text is a valid value.
BAD_VALUE = {
    "service_name": None,
    "store": None,
    "endpoint": "collector:4317",
    "protocol": "tcp",
    "console": "maybe",
    "store_max_age": "forever",
    "store_max_flows": "-3",
    "propagate_to": ",",
    "propagation_key": "short",
    "propagation_max_age": "forever",
    "capture_logging": "perhaps",
    "capture_print": "perhaps",
    "shutdown_timeout": "soon",
    "flow_metrics": "maybe",
    "cardinality_limit": "lots",
    "handle_sigterm": "sure",
    "queue_full_wait": "a while",
}


def test_setup_takes_exactly_the_options_of_the_table() -> None:
    import inspect

    from dashfrog_sdk.setup import setup

    providers = {"tracer_provider", "logger_provider", "meter_provider"}
    assert set(inspect.signature(setup).parameters) - providers == set(config.OPTIONS)
    assert set(BAD_VALUE) == set(config.OPTIONS)  # every option has its bad-value case below
    for keyword, option in config.OPTIONS.items():
        assert option.variable in (setup.__doc__ or "") or option.variable.startswith(
            "OTEL_EXPORTER_OTLP_"
        ), f"setup()'s docstring does not name {option.variable} ({keyword})"


@pytest.mark.parametrize("keyword", [k for k, bad in BAD_VALUE.items() if bad is not None], ids=str)
def test_every_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, keyword: str) -> None:
    variable = config.OPTIONS[keyword].variable
    monkeypatch.setenv(variable, BAD_VALUE[keyword])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=variable):
        config.load()


def test_an_unknown_keyword_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown keyword.*store_max_ages"):
        config.load(store_max_ages="1d")


def test_queue_full_wait_is_a_short_duration_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.load().queue_full_wait_s == config.DEFAULT_QUEUE_FULL_WAIT_S == 1.0
    monkeypatch.setenv("DASHFROG_QUEUE_FULL_WAIT", "50ms")
    assert config.load().queue_full_wait_s == 0.05
    monkeypatch.setenv("DASHFROG_QUEUE_FULL_WAIT", "off")
    assert config.load().queue_full_wait_s == 0.0  # drop at once, as before backpressure
    assert config.load(queue_full_wait=0.2).queue_full_wait_s == 0.2  # the keyword wins
    for bad in (-1, True, float("nan")):
        with pytest.raises(ValueError, match="queue_full_wait must be a duration"):
            config.load(queue_full_wait=bad)
    assert config.load(queue_full_wait="10s").queue_full_wait_s == 10.0
    monkeypatch.setenv("DASHFROG_QUEUE_FULL_WAIT", "11s")
    with pytest.raises(ValueError, match="DASHFROG_QUEUE_FULL_WAIT must be at most 10s"):
        config.load()


def test_durations_take_the_same_units_as_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    # One parser for config, store and CLI: `dashfrog flows --since 1w` and the variables.
    monkeypatch.setenv("DASHFROG_STORE_MAX_AGE", "1w")
    monkeypatch.setenv("DASHFROG_SHUTDOWN_TIMEOUT", "1500ms")
    cfg = config.load()
    assert cfg.store_max_age_s == 7 * 86400.0
    assert cfg.shutdown_timeout_s == 1.5
