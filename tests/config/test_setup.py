"""setup(): embedded default, OTLP when configured, reuse of an application's providers,
idempotence, bad variables, flush at exit. Each case runs in a fresh interpreter because
OpenTelemetry's global providers can be set only once per process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import ROOT, clean_env
from tests.support.collector import RotelCollector, collector_env

CLEAN_ENV = clean_env()


def run(
    code: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**CLEAN_ENV, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_quickstart_embedded_default(tmp_path: Path) -> None:
    """No configuration: a readable tree on the console, and a local flow store."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env={**CLEAN_ENV, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    flow_id = out.strip().splitlines()[0].split()[-1] if out.startswith("flow id") else None
    assert "▶ flow data_import  tenant=acme-corp env=production" in out
    assert "▶ step validate" in out and "✔ step validate  completed" in out
    assert "✔ step process  completed" in out
    assert "✔ flow data_import  completed" in out
    assert flow_id is None or len(flow_id) == 32
    db = tmp_path / ".dashfrog" / "flows.db"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert tables


def test_console_shows_failed_step_error() -> None:
    proc = run(
        """
        from dashfrog_sdk import flow, step
        try:
            with flow.start("import", tenant="acme"):
                with step.start("parse"):
                    raise ValueError("bad row 7")
        except ValueError:
            pass
        """,
        {"DASHFROG_STORE": "off"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "✘ step parse  failed" in proc.stdout and "ValueError: bad row 7" in proc.stdout
    assert "✘ flow import  failed" in proc.stdout


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_export_when_endpoint_set(protocol: str) -> None:
    with RotelCollector() as collector:
        env = collector_env(collector, protocol)  # type: ignore[arg-type]
        proc = run(
            """
            from dashfrog_sdk import flow, step
            import dashfrog_sdk
            with flow.start("data_import", tenant="acme-corp", env="production") as flow_id:
                with step.start("validate"):
                    dashfrog_sdk.flush()  # the start events go while the flow runs
            print(flow_id)
            """,
            {**env, "OTEL_SERVICE_NAME": "importer"},
        )
        assert proc.returncode == 0, proc.stderr
        flow_id = proc.stdout.strip().splitlines()[-1]
        assert "▶ flow" not in proc.stdout  # the console is off when exporting
        receiver = collector.receiver
        spans = receiver.wait_for_spans(
            lambda s: s.attributes.get("dashfrog.flow.id") == flow_id, count=2
        )
        by_name = {s.name: s for s in spans}
        flow_span, step_span = by_name["flow data_import"], by_name["step validate"]
        assert step_span.parent_span_id == flow_span.span_id
        assert flow_span.attributes["dashfrog.tenant"] == "acme-corp"
        assert flow_span.attributes["dashfrog.label.env"] == "production"
        assert flow_span.attributes["dashfrog.flow.status"] == "completed"
        assert flow_span.resource["service.name"] == "importer"
        logs = receiver.wait_for_logs(
            lambda r: r.attributes.get("dashfrog.flow.id") == flow_id, count=2
        )
        assert sorted(r.event_name for r in logs) == ["dashfrog.flow.start", "dashfrog.step.start"]
        start = next(r for r in logs if r.event_name == "dashfrog.flow.start")
        assert start.span_id == flow_span.span_id and start.trace_id == flow_span.trace_id
        assert start.resource["service.name"] == "importer"


def test_reuses_application_providers() -> None:
    proc = run(
        """
        from opentelemetry import trace, _logs
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor, InMemoryLogRecordExporter
        spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
        tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(spans))
        lp = LoggerProvider(); lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
        trace.set_tracer_provider(tp); _logs.set_logger_provider(lp)

        import dashfrog_sdk
        from dashfrog_sdk import flow, step
        dashfrog_sdk.setup()
        dashfrog_sdk.setup()  # idempotent
        with flow.start("order", tenant="acme") as flow_id:
            with trace.get_tracer("app").start_as_current_span("app span"):
                dashfrog_sdk.flush()  # the flow runs: its start event is sent
        dashfrog_sdk.flush()
        assert trace.get_tracer_provider() is tp and _logs.get_logger_provider() is lp
        names = sorted(s.name for s in spans.get_finished_spans())
        assert names == ["app span", "flow order"], names
        app = next(s for s in spans.get_finished_spans() if s.name == "app span")
        assert app.attributes["dashfrog.flow.id"] == flow_id
        events = [r.log_record.event_name for r in logs.get_finished_logs()]
        assert events == ["dashfrog.flow.start"], events
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"  # and no console tree: the app's pipeline is the output


def test_setup_twice_with_other_arguments_warns() -> None:
    proc = run(
        """
        import logging; logging.basicConfig()
        import dashfrog_sdk
        dashfrog_sdk.setup(console=False, store=False)
        dashfrog_sdk.setup(console=False, store=False)
        dashfrog_sdk.setup(service_name="other")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("setup() already ran") == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DASHFROG_CONSOLE": "maybe"}, "DASHFROG_CONSOLE must be 'on' or 'off'"),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
            "OTEL_EXPORTER_OTLP_PROTOCOL must be one of grpc, http/protobuf",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
            "OTEL_EXPORTER_OTLP_ENDPOINT must be a URL",
        ),
        (
            {"OTEL_EXPORTER_OTLP_HEADERS": "api-key"},
            "OTEL_EXPORTER_OTLP_HEADERS must be comma-separated key=value",
        ),
        ({"DASHFROG_STORE_MAX_AGE": "forever"}, "DASHFROG_STORE_MAX_AGE must be a duration"),
        (
            {"DASHFROG_PROPAGATION_KEY": "short"},
            "DASHFROG_PROPAGATION_KEY must be at least 16 characters",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER must be one of otlp, console, none",
        ),
    ],
)
def test_bad_variables_raise_at_setup(env: dict[str, str], message: str) -> None:
    proc = run("import dashfrog_sdk; dashfrog_sdk.setup()", env)
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr and message in proc.stderr


def test_flushes_at_exit_without_explicit_flush(tmp_path: Path) -> None:
    proc = run(
        """
        from dashfrog_sdk import flow, step
        for i in range(50):
            with flow.start("batch", tenant=f"t{i}"), step.start("work"):
                pass
        with flow.start("last", tenant="acme"):
            pass
        """,
        {"DASHFROG_STORE": str(tmp_path / "flows.db")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("✔ flow batch  completed") == 50
    assert "✔ flow last  completed" in proc.stdout


def test_a_shutdown_cut_short_leaves_later_setups_waiting_for_room(tmp_path: Path) -> None:
    """shutdown() stops the waits for room (backpressure) to keep to its timeout; an exception
    inside it must not leave the lifecycle bus, which outlives setup(), never waiting again,
    nor reach the caller (it did: RuntimeError out of dashfrog_sdk.shutdown())."""
    proc = run(
        """
        import importlib
        import dashfrog_sdk
        from dashfrog_sdk.lifecycle import bus
        dashfrog_sdk.setup()
        s = importlib.import_module("dashfrog_sdk.setup")  # the module, not the function
        def boom(*args, **kwargs):
            raise RuntimeError("boom")
        s._shutdown_within = boom
        dashfrog_sdk.shutdown()  # never raises into user code: warns, counts
        print("no_wait", bus._bus._no_wait)
        print("errors", dashfrog_sdk.stats()["diagnostics"].get("shutdown.errors"))
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no_wait False" in proc.stdout and "errors 1" in proc.stdout, proc.stdout
    assert proc.stderr.count("internal error in shutdown(), ignored: RuntimeError('boom')") == 1
