"""Python logging capture: records emitted inside a flow become OTel log records with the flow's
attributes and the current step; records outside flows are left alone."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, logs, step
from dashfrog_sdk.testing import capture

log = logging.getLogger("tests.store.flowlogs")


@pytest.fixture
def memory() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    previous = logs._installed
    previous_provider = getattr(previous, "_logger_provider", None)
    previous_level = previous.level if previous is not None else logging.INFO
    log.setLevel(logging.DEBUG)
    with capture():  # the SDK configured for tests: no console, no store
        yield provider, exporter
    logs.uninstall_logging_capture()
    if previous_provider is not None:  # give back what setup() installed
        logs.install_logging_capture(previous_provider, previous_level)
    provider.shutdown()


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if h is logs._installed]


def test_records_inside_a_flow_carry_flow_and_step(
    memory: tuple[LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    provider, exporter = memory
    logs.install_logging_capture(provider)
    log.info("before any flow")
    with flow.start("order", tenant="acme", region="eu") as flow_id:
        log.info("in the flow")
        with step.start("charge"):
            log.warning("charging %s", 42)
            log.debug("too detailed")
    log.info("after the flow")
    logging.getLogger("opentelemetry.sdk.test").warning("sdk noise inside no flow")

    records = [r.log_record for r in exporter.get_finished_logs()]
    assert [r.body for r in records] == ["in the flow", "charging 42"]
    flow_rec, step_rec = records
    for record in records:
        attrs = record.attributes or {}
        assert attrs[c.FLOW_ID] == flow_id
        assert attrs[c.FLOW_NAME] == "order"
        assert attrs[c.TENANT] == "acme"
        assert attrs[c.label_key("region")] == "eu"
        assert record.event_name is None
    assert c.STEP_NAME not in (flow_rec.attributes or {})
    assert (step_rec.attributes or {})[c.STEP_NAME] == "charge"
    assert step_rec.severity_text == "WARN"
    assert step_rec.span_id and step_rec.span_id != flow_rec.span_id  # the step's span


def test_install_is_idempotent_and_uninstall_detaches(
    memory: tuple[LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    provider, exporter = memory
    first = logs.install_logging_capture(provider)
    assert logs.install_logging_capture(provider) is first
    assert len(_ours()) == 1
    other = LoggerProvider(shutdown_on_exit=False)
    retargeted = logs.install_logging_capture(other, level=logging.WARNING)
    assert first not in logging.getLogger().handlers and len(_ours()) == 1
    assert retargeted.level == logging.WARNING
    logs.uninstall_logging_capture()
    assert _ours() == [] and logs._installed is None
    logs.uninstall_logging_capture()  # a second time is a no-op
    with flow.start("order", tenant="acme"):
        log.warning("nobody listens")
    assert exporter.get_finished_logs() == ()
    other.shutdown()


def test_level(memory: tuple[LoggerProvider, InMemoryLogRecordExporter]) -> None:
    provider, exporter = memory
    logs.install_logging_capture(provider, level=logging.DEBUG)
    with flow.start("order", tenant="acme"):
        log.debug("detail")
    assert [r.log_record.body for r in exporter.get_finished_logs()] == ["detail"]
