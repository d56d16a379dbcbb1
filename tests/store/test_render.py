"""The renderers on hostile and unusual flows: text that would break Mermaid or Markdown,
running flows with pending steps, deep nesting, flows with no steps."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from dashfrog_sdk.render import flowchart, markdown, sequence_diagram
from dashfrog_sdk.render.timeline import timeline, timeline_with_logs
from dashfrog_sdk.store import FlowDetail, FlowStore
from tests.store.conftest import DemoStore, Pipe
from tests.store.mermaid_check import parse_flowchart, parse_sequence

NASTY = 'a;b #1 <x> "q" %% | `tick` end\nnewline'


def _text(renderable: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, no_color=True).print(renderable)
    return buffer.getvalue()


def _detail(path: Path, flow_id: str) -> FlowDetail:
    with FlowStore(path) as store:
        return store.flow(flow_id)


def test_hostile_text_stays_valid(pipe: Pipe, store_path: Path) -> None:
    try:
        with pipe.flow(NASTY, "tenant;#1", note=NASTY) as fh:
            with pipe.step(fh, NASTY, payload=NASTY):
                pipe.event(fh, NASTY, why=NASTY)
            with pipe.step(fh, "end"):
                raise RuntimeError(NASTY)
    except RuntimeError:
        pass
    pipe.flush()
    detail = _detail(store_path, fh.id)

    seq = parse_sequence(sequence_diagram(detail))
    assert len(seq.messages) == 2 and seq.messages[1][1] == "-x"
    chart = parse_flowchart(flowchart(detail))
    assert sorted(chart.classes.values()).count("failed") >= 2  # the step and the flow
    doc = markdown(detail)
    parse_sequence(doc.split("```mermaid\n", 1)[1].split("```", 1)[0])
    for line in doc.splitlines():
        if line.startswith("| ") and "Step" not in line and "---" not in line:
            cells = line.replace("\\|", "").count("|")
            assert cells in (3, 5, 7), line  # escaped pipes never split a cell
    out = _text(timeline(detail))
    assert "RuntimeError" in out and "tick" in out


def test_running_flow_with_pending_steps(pipe: Pipe, store_path: Path) -> None:
    with pipe.flow("etl", "acme") as done:
        for name in ("extract", "transform", "load"):
            with pipe.step(done, name):
                pass
    with pipe.flow("etl", "acme") as running:
        with pipe.step(running, "extract"):
            pass
        with pipe.step(running, "transform"):
            pipe.flush()
            detail = _detail(store_path, running.id)
    assert detail.status == "running" and detail.current_step == "transform"
    assert detail.pending_steps == ["load"]
    chart = parse_flowchart(flowchart(detail))
    classes = {chart.nodes[n].split("<br/>")[0]: c for n, c in chart.classes.items()}
    assert classes["extract"] == "completed"
    assert classes["transform"] == "running"
    assert classes["load"] == "pending"
    assert chart.class_defs["pending"]["fill"] == "#6c757d"
    assert chart.class_defs["running"]["fill"] == "#fd7e14"
    seq = parse_sequence(sequence_diagram(detail))
    assert seq.messages[-1][1] == "-)" and "running" in seq.messages[-1][3]
    assert any("pending: load" in text for _, text in seq.notes)
    out = _text(timeline(detail))
    assert "◀ current step" in out and "○ load  pending" in out
    assert "Still running" in markdown(detail)


def test_deep_nesting_and_services(store_path: Path) -> None:
    api, worker = Pipe(store_path, "api"), Pipe(store_path, "billing-worker")
    try:
        with (
            api.flow("deep", "acme") as fh,
            api.step(fh, "l0"),
            api.step(fh, "l1"),
            api.step(fh, "l2"),
            api.span(fh, "HTTP POST"),
        ):
            pass
        api.flush()
        with worker.flow("solo", "acme") as other:
            pass
        worker.flush()
    finally:
        api.close()
        worker.close()
    detail = _detail(store_path, fh.id)
    assert [(s.name, s.depth) for s in detail.steps] == [("l0", 0), ("l1", 1), ("l2", 2)]
    chart = parse_flowchart(flowchart(detail))
    assert sum(1 for e in chart.edges if e[1] == "-.->") == 2
    tree = _text(timeline(detail))
    assert "        └── ✔ l2" in tree
    lonely = _detail(store_path, other.id)
    seq = parse_sequence(sequence_diagram(lonely))
    assert list(seq.participants.values()) == ["billing-worker"] and seq.messages == []
    assert "No steps recorded." in markdown(lonely)
    assert "no log records" in _text(timeline_with_logs(lonely))


def _mermaid_dir() -> Path | None:
    default = Path(__file__).resolve().parents[2] / ".cache" / "mermaid"
    directory = Path(os.environ.get("DASHFROG_TEST_MERMAID_DIR", default))
    if shutil.which("node") and (directory / "node_modules" / "mermaid").is_dir():
        return directory
    return None


def test_real_mermaid_parser(
    demo_store: DemoStore, pipe: Pipe, store_path: Path, tmp_path: Path
) -> None:
    """Every diagram the CLI draws for the demo flows, and a hostile one, parse with mermaid 11
    itself. Needs node and `npm install mermaid@11 jsdom` in DASHFROG_TEST_MERMAID_DIR
    (default .cache/mermaid); skipped otherwise (the parser-based checks above always run)."""
    directory = _mermaid_dir()
    if directory is None:
        pytest.skip("node + mermaid not installed (npm install mermaid@11 jsdom)")
    files: list[Path] = []
    with FlowStore(demo_store.path) as store:
        details = [store.flow(flow_id) for flow_id in demo_store.ids.values()]
    try:
        with pipe.flow(NASTY, "t;#", note=NASTY) as fh, pipe.step(fh, NASTY, x=NASTY):
            raise RuntimeError(NASTY)
    except RuntimeError:
        pass
    pipe.flush()
    details.append(_detail(store_path, fh.id))
    for i, detail in enumerate(details):
        for kind, source in (("seq", sequence_diagram(detail)), ("fc", flowchart(detail))):
            files.append(tmp_path / f"{kind}{i}.mmd")
            files[-1].write_text(source)
    broken = tmp_path / "broken.mmd"
    broken.write_text("sequenceDiagram\n    A-xx>B: broken\n")
    proc = subprocess.run(
        ["node", str(Path(__file__).with_name("mermaid_parse.mjs")), *map(str, files), str(broken)],
        env={**os.environ, "MERMAID_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = {}
    for line in proc.stdout.splitlines():
        verdict, name = line.split(" ")[:2]
        results[name] = verdict
    assert results.pop(str(broken)) == "FAIL"  # the parser really checks
    assert results == {str(f): "OK" for f in files}, proc.stdout + proc.stderr
