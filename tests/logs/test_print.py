"""print() capture (opt-in, DASHFROG_CAPTURE_PRINT): lines printed inside a flow become log
records of the flow and its step, and still reach the real stdout; print() never fails."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, logs, step
from dashfrog_sdk.store import FlowStore
from dashfrog_sdk.testing import capture
from tests.store.conftest import run_cli
from tests.support import ROOT, clean_env

Memory = tuple[LoggerProvider, InMemoryLogRecordExporter]


@pytest.fixture
def memory() -> Iterator[Memory]:
    """A logger provider to capture print() into; the capture is installed by each test, as
    pytest's own output capture replaces sys.stdout between a fixture's setup and the test."""
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with capture():
        try:
            yield provider, exporter
        finally:
            logs.uninstall_print_capture()
    provider.shutdown()


def _lines(exporter: InMemoryLogRecordExporter) -> list[tuple[object, object, object]]:
    return [
        (
            r.log_record.body,
            (r.log_record.attributes or {}).get(c.STEP_NAME),
            r.instrumentation_scope.name,
        )
        for r in exporter.get_finished_logs()
    ]


def test_prints_inside_a_flow_are_its_log_records(
    memory: Memory, capsys: pytest.CaptureFixture[str]
) -> None:
    provider, exporter = memory
    logs.install_print_capture(provider)
    print("before any flow")
    with flow.start("import", tenant="acme") as flow_id:
        print("reading", 3, "files")
        with step.start("load"):
            print("row 1 ", end="")
            print("done")  # one line, written in two calls
            print("two\nlines")
    print("after the flow")
    assert _lines(exporter) == [
        ("reading 3 files", None, c.PRINT_LOGGER),
        ("row 1 done", "load", c.PRINT_LOGGER),
        ("two", "load", c.PRINT_LOGGER),
        ("lines", "load", c.PRINT_LOGGER),
    ]
    for record in exporter.get_finished_logs():
        attrs = record.log_record.attributes or {}
        assert attrs[c.FLOW_ID] == flow_id and attrs[c.TENANT] == "acme"
        assert record.log_record.trace_id  # in the flow's trace
    # Everything still reached the real stdout, unchanged.
    assert capsys.readouterr().out == (
        "before any flow\nreading 3 files\nrow 1 done\ntwo\nlines\nafter the flow\n"
    )


def test_threads_keep_their_own_lines(memory: Memory) -> None:
    provider, exporter = memory
    logs.install_print_capture(provider)
    ids: dict[int, str] = {}

    def worker(n: int) -> None:
        with flow.start("job", tenant=f"t{n}") as flow_id:
            ids[n] = flow_id
            for i in range(200):
                print(f"w{n}-", end="")
                print(i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_flow: dict[object, list[object]] = {}
    for record in exporter.get_finished_logs():
        attrs = record.log_record.attributes or {}
        by_flow.setdefault(attrs[c.FLOW_ID], []).append(record.log_record.body)
    for n, flow_id in ids.items():
        assert by_flow[flow_id] == [f"w{n}-{i}" for i in range(200)]


def test_a_long_line_is_sent_in_pieces(memory: Memory) -> None:
    provider, exporter = memory
    logs.install_print_capture(provider)
    with flow.start("job", tenant="t"):
        print("x" * (logs.MAX_PRINT_LINE * 2 + 5))
    bodies = [r.log_record.body for r in exporter.get_finished_logs()]
    assert [len(str(b)) for b in bodies] == [logs.MAX_PRINT_LINE, logs.MAX_PRINT_LINE, 5]


@pytest.mark.internal_errors
def test_print_never_fails_because_of_the_capture(
    memory: Memory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    installed = logs.install_print_capture(memory[0])

    def broken(record: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(installed._logger, "emit", broken)
    with flow.start("job", tenant="t"):
        print("still printed")
        print("and again")
    assert capsys.readouterr().out == "still printed\nand again\n"
    assert diagnostics.counts()["logs.print_errors"] == 2


def test_uninstall_gives_stdout_back(memory: Memory) -> None:
    provider, _ = memory
    installed = logs.install_print_capture(provider)
    assert sys.stdout is installed
    assert logs.install_print_capture(provider) is installed  # idempotent: not wrapped twice
    logs.uninstall_print_capture()
    assert sys.stdout is installed.dashfrog_wrapped  # type: ignore[union-attr]


def test_capture_print_option_end_to_end(tmp_path: Path) -> None:
    """DASHFROG_CAPTURE_PRINT=on: setup() turns it on, the store keeps the lines under the
    flow and step, `dashfrog flow ID --logs` shows them; off by default."""
    store = tmp_path / "flows.db"
    script = (
        "from dashfrog_sdk import flow, step\n"
        "with flow.start('import', tenant='acme') as fid:\n"
        "    with step.start('load'):\n"
        "        print('loaded 3 rows')\n"
        "print(fid)\n"
    )
    env = clean_env(DASHFROG_STORE=str(store), DASHFROG_CONSOLE="off", PYTHONPATH=str(ROOT))
    ids = []
    for switch in ("on", None):
        run_env = dict(env)
        if switch:
            run_env["DASHFROG_CAPTURE_PRINT"] = switch
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env=run_env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0] == "loaded 3 rows"  # the real stdout got it
        ids.append(proc.stdout.splitlines()[-1])
    with FlowStore(store) as flows:
        on, off = flows.flow(ids[0]), flows.flow(ids[1])
    assert [(e.body, e.step_name, e.logger) for e in on.logs] == [
        ("loaded 3 rows", "load", c.PRINT_LOGGER)
    ]
    assert off.logs == []
    cli = run_cli("flow", ids[0], "--logs", env={"DASHFROG_STORE": str(store)})
    assert cli.returncode == 0, cli.stderr
    assert "loaded 3 rows" in cli.stdout
