"""The `dashfrog` command on hostile stores: user strings are data, never markup or escapes.

The CLI runs as a real subprocess, piped and in a real pseudo-terminal (80 columns), against
stores the SDK's own store processors wrote. Markdown is checked with a real CommonMark
renderer (markdown-it-py, with raw HTML allowed, so nothing is hidden by a safe mode).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render._fmt import clock
from dashfrog_sdk.store import FlowStore
from tests.store.conftest import ROOT, Pipe, run_cli
from tests.store.mermaid_check import parse_flowchart, parse_sequence
from tests.support import clean_env

LINK_TENANT = "[link=https://evil.example]click[/link]"
BAD_MARKUP = "checkout[/]"
OSC_LINK = "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07"
CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"
HTML_STEP = "``x`` <img src=x onerror=alert(1)> | `y` & &lt;b&gt;"
TICK_STEP = "`tick` [/bold] :smile:"
# An artifact holding all of it, and a fence that would close a Markdown code block.
HOSTILE_ARTIFACT = {
    "html": HTML_STEP,
    "osc": OSC_LINK,
    "clear": CLEAR,
    "c1": C1_CSI,
    "fence": "```\n# not a heading\n````",
    "bidi": "abc\u202edcba",
}
# What a terminal would act on: ESC, 8-bit CSI/OSC, BEL.
RAW_CONTROLS = re.compile("[\x1b\x9b\x9d\x07]")


@pytest.fixture
def hostile(pipe: Pipe, store_path: Path) -> str:
    """One failed flow whose every user string is hostile; its id."""
    try:
        with pipe.flow(BAD_MARKUP + OSC_LINK, LINK_TENANT, note=CLEAR + C1_CSI) as fh:
            with pipe.step(fh, HTML_STEP, payload=OSC_LINK) as span:
                pipe.event(fh, "evt" + CLEAR, why=C1_CSI)
                pipe.progress(fh, HTML_STEP, span, 1, 2, OSC_LINK + HTML_STEP)
                pipe.artifact(fh, HTML_STEP, span, "out", HOSTILE_ARTIFACT)
                pipe.log(fh, "log " + OSC_LINK + " [red]x[/red]", step=HTML_STEP)
            with pipe.step(fh, TICK_STEP):
                raise RuntimeError("boom " + CLEAR + " [link=https://evil.example]x[/link]")
    except RuntimeError:
        pass
    pipe.flush()
    return fh.id


def _ok(*args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    proc = run_cli(*args, env={"COLUMNS": "400", **(env or {})})  # no folding of long strings
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout, proc.stderr


def _in_terminal(*args: str, columns: int = 80) -> str:
    """Run the CLI in a real pseudo-terminal `columns` wide; everything it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = clean_env(drop=("DASHFROG_", "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR"))
    env |= {"PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashfrog_sdk.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: the child closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        assert proc.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode()


_SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own colours, the only escapes expected


def _assert_no_raw_controls(out: str) -> None:
    assert not RAW_CONTROLS.search(out), repr(out[:2000])


def test_piped_output_shows_user_strings_literally(hostile: str, store_path: Path) -> None:
    store = str(store_path)
    outputs = {
        "flows": _ok("flows", "--store", store)[0],
        "flow": _ok("flow", hostile, "--store", store)[0],
        "logs": _ok("flow", hostile, "--logs", "--store", store)[0],
        "tail": _ok("tail", "--once", "--since", "1h", "--store", store)[0],
        "stats": _ok("stats", "--store", store)[0],
        "durations": _ok("durations", hostile, "--store", store)[0],
        "mermaid": _ok("flow", hostile, "--mermaid", "--store", store)[0],
        "flowchart": _ok("flow", hostile, "--flowchart", "--store", store)[0],
        "markdown": _ok("flow", hostile, "--markdown", "--store", store)[0],
        "json": _ok("flow", hostile, "--json", "--store", store)[0],
    }
    for what, out in outputs.items():
        _assert_no_raw_controls(out)
        if what != "durations":  # (its step names hold no control character)
            assert "\\x1b" in out or "\\u001b" in out, what  # shown, not dropped
    for what in ("flows", "flow", "tail", "stats"):
        assert LINK_TENANT in outputs[what], what
    for what in ("flows", "flow", "tail"):
        assert BAD_MARKUP in outputs[what], what
    assert "[red]x[/red]" in outputs["logs"] and ":smile:" in outputs["flow"]
    # The artifact and the progress message, in the flow view and its JSON, whole and as data.
    assert '◆ out = {"html":"``x`` <img' in outputs["flow"]
    assert not any("\u202e" in out for out in outputs.values())  # bidi controls: escaped
    step = next(s for s in json.loads(outputs["json"])["steps"] if s["artifacts"])
    assert step["artifacts"] == {"out": HOSTILE_ARTIFACT}
    assert step["progress"]["message"] == OSC_LINK + HTML_STEP


def test_terminal_output_shows_user_strings_literally(hostile: str, store_path: Path) -> None:
    store = str(store_path)
    for args in (
        ("flows", "--store", store),
        ("flow", hostile, "--logs", "--store", store),
        ("tail", "--once", "--since", "1h", "--store", store),
    ):
        out = _SGR.sub("", _in_terminal(*args, columns=200))
        _assert_no_raw_controls(out)  # no OSC 8 hyperlink, no screen clear, no 8-bit CSI
        assert LINK_TENANT in out and BAD_MARKUP in out, args


def _md_tokens(doc: str) -> list[object]:
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    flat = []
    for token in md.parse(doc):
        flat.append(token)
        flat.extend(token.children or [])
    return flat


def test_markdown_is_safe_in_a_real_commonmark_renderer(hostile: str, store_path: Path) -> None:
    doc = _ok("flow", hostile, "--markdown", "--store", str(store_path))[0]
    tokens = _md_tokens(doc)
    kinds = {t.type for t in tokens}  # type: ignore[attr-defined]
    assert not kinds & {"html_inline", "html_block", "link_open", "image"}, kinds
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(doc)
    assert "<img" not in html and "<b>" not in html and "href" not in html
    code = [t.content for t in tokens if t.type == "code_inline"]  # type: ignore[attr-defined]
    assert HTML_STEP in code and TICK_STEP in code and LINK_TENANT in code  # whole, literal
    # Every table keeps its shape: each body row has as many cells as its header.
    cells, header = 0, 0
    for token in tokens:
        kind = token.type  # type: ignore[attr-defined]
        if kind == "tr_open":
            cells = 0
        elif kind in ("th_open", "td_open"):
            cells += 1
        elif kind == "tr_close":
            header = header or cells
            assert cells == header
        elif kind == "table_close":
            header = 0
    # The artifact is one JSON code block (no fence inside it closes it), and reads back whole.
    fences = [t for t in tokens if t.type == "fence" and t.info == "json"]  # type: ignore[attr-defined]
    assert len(fences) == 1 and "## Output" in doc
    assert json.loads(fences[0].content) == HOSTILE_ARTIFACT  # type: ignore[attr-defined]
    performance = doc.split("## Performance", 1)[1]
    assert performance.count("\n| ") >= 3  # the two steps and the total, one row each
    sequence = doc.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    parse_sequence(sequence)


def test_mermaid_of_hostile_names_parses(hostile: str, store_path: Path, tmp_path: Path) -> None:
    from tests.store.test_render import _mermaid_dir

    seq = _ok("flow", hostile, "--mermaid", "--store", str(store_path))[0]
    chart = _ok("flow", hostile, "--flowchart", "--store", str(store_path))[0]
    parse_sequence(seq)
    parse_flowchart(chart)
    assert "`" not in chart and "`" not in seq  # a leading backtick is a Mermaid markdown string
    directory = _mermaid_dir()
    if directory is None:
        pytest.skip("node + mermaid not installed (npm install mermaid@11 jsdom)")
    files = [tmp_path / "seq.mmd", tmp_path / "chart.mmd"]
    files[0].write_text(seq)
    files[1].write_text(chart)
    proc = subprocess.run(
        ["node", str(Path(__file__).with_name("mermaid_parse.mjs")), *map(str, files)],
        env={**os.environ, "MERMAID_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- 80 columns, the --limit notice, tail times -----------------------------------


def _flows(pipe: Pipe, n: int, name: str = "order_processing", tenant: str = "acme-corp") -> None:
    for i in range(n):
        with pipe.flow(name, tenant, region="eu", n=i) as fh, pipe.step(fh, "charge_card"):
            pass
    pipe.flush()


def test_flows_at_80_columns_keep_id_name_tenant_status(pipe: Pipe, store_path: Path) -> None:
    _flows(pipe, 3, name="order_processing_eu", tenant="customer-12345")
    with FlowStore(store_path) as store:
        ids = [f.id for f in store.flows()]
    out = _SGR.sub("", _in_terminal("flows", "--store", str(store_path), columns=80))
    lines = [line for line in out.replace("\r", "").splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split()[:5] == ["FLOW", "ID", "NAME", "TENANT", "STATUS"], lines[0]
    assert len(lines) == 4, lines  # one line a flow: nothing folded
    for flow_id, row in zip(ids, lines[1:], strict=True):
        cells = row.split()
        assert flow_id.startswith(cells[0]) and len(cells[0]) >= 12  # a usable id prefix
        assert cells[1:5] == ["order_processing_eu", "customer-12345", "✔", "completed"], row
    wide = _SGR.sub("", _in_terminal("flows", "--store", str(store_path), columns=160))
    assert all(flow_id in wide for flow_id in ids) and "LABELS" in wide


def test_cut_rows_are_announced(pipe: Pipe, store_path: Path) -> None:
    _flows(pipe, 60)
    out, err = _ok("flows", "--store", str(store_path))
    assert err.strip() == "50 of 60 shown (--limit)"
    assert len(re.findall(r"^[0-9a-f]{32} ", out, re.M)) == 50
    _, err = _ok("flows", "--store", str(store_path), "--limit", "10", "--name", "order_processing")
    assert err.strip() == "10 of 60 shown (--limit)"
    _, err = _ok("flows", "--store", str(store_path), "--limit", "60")
    assert err == ""


def test_tail_once_shows_when_flows_changed(pipe: Pipe, store_path: Path) -> None:
    start = time.time_ns() - 3_600 * 10**9  # an hour ago: not the time tail runs
    end = start + 90 * 10**9
    flow_id = uuid.uuid4().hex
    attrs = {c.FLOW_ID: flow_id, c.FLOW_NAME: "nightly", c.TENANT: "acme"}
    span = pipe.tracer.start_span(
        c.FLOW_SPAN_PREFIX + "nightly",
        attributes={**attrs, c.FLOW_END_ON_EXIT: True, c.FLOW_STATUS: c.COMPLETED},
        start_time=start,
    )
    pipe.emit(c.EVENT_FLOW_START, attrs, span, ts=start)
    span.end(end_time=end)
    pipe.flush()
    out, _ = _ok("tail", "--once", "--since", "5m", "--store", str(store_path))
    lines = [line for line in out.splitlines() if flow_id in line]
    assert [line.split()[2] for line in lines] == ["started", "completed"], out
    assert lines[0].startswith(clock(start, date=False))
    assert lines[1].startswith(clock(end, date=False))
