"""A flow as a rich tree: steps (nested), services, offsets, durations, errors, events, logs."""

from __future__ import annotations

import time

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render import _fmt
from dashfrog_sdk.store.model import FlowDetail, FlowEvent, LogEntry, Step

_DIM = "grey50"
# Every user-supplied string goes into a Text (never parsed as rich markup) through this.
_v = _fmt.visible


def status_label(status: str) -> Text:
    """``✔ completed`` in the status's colour."""
    return Text(_fmt.status_text(status), style=_fmt.STYLES.get(status, ""))


def _header(detail: FlowDetail) -> Text:
    text = Text.assemble(
        ("flow ", "bold"),
        (_v(detail.name or "?"), "bold cyan"),
        "  ",
        (_v(detail.id), _DIM),
    )
    text.append("\n")
    text.append(f"tenant={_v(detail.tenant)}", style="bold")
    if detail.labels:
        text.append("  " + _fmt.kv(detail.labels))
    text.append("  ")
    text.append_text(status_label(detail.status))
    text.append("  " + _fmt.duration(detail.duration_ms))
    if detail.status in c.OPEN:
        text.append(" so far", style=_DIM)
        if detail.current_step:
            at = detail.current_step
            if detail.current_progress is not None:
                at = detail.current_progress.text(at)
            text.append(f"  at step {_v(at)}", style=_fmt.STYLES[c.RUNNING])
    text.append("\n")
    meta = f"started {_fmt.clock(detail.start_ns)}"
    if detail.service:
        meta += f" by {_v(detail.service)}"
    if detail.trace_id:
        meta += f"  trace {_v(detail.trace_id)}"
    if detail.parent_id:
        meta += f"  child of flow {_v(detail.parent_id)}"
    if detail.timeout_s is not None:
        meta += f"  timeout {_fmt.duration(detail.timeout_s * 1000)}"
    text.append(meta, style=_DIM)
    if detail.error_type or detail.error_message:
        text.append("\n")
        text.append(_fmt.error_text(detail.error_type, detail.error_message), style="red")
    return text


def _step_label(detail: FlowDetail, step: Step) -> Text:
    status = _fmt.step_status(detail, step)
    style = _fmt.STYLES.get(status, "")
    text = Text.assemble((f"{_fmt.symbol(status)} ", style), (_v(step.label), "bold " + style))
    if step.service:
        text.append(f"  [{_v(step.service)}]", style="cyan")
    text.append(f"  {_fmt.offset(step.start_ns, detail.start_ns)}", style=_DIM)
    if step.status == c.RUNNING and status == c.RUNNING:
        text.append("  running", style=style)
        if step.progress is not None:
            text.append(f"  {_v(step.progress.text())}", style="bold " + style)
        if detail.current_step == step.name and detail.current is step:
            text.append("  ◀ current step", style="bold " + style)
    else:
        text.append(f"  {_fmt.duration(step.duration_ms)}")
        if step.progress is not None:
            text.append(f"  {_v(step.progress.text())}", style=_DIM)
    if step.optional:
        text.append("  (optional)", style=_DIM)
    if notes := _fmt.step_notes(step, time.time_ns()):
        text.append(" " + notes, style=_DIM)
    if step.attributes:
        text.append("  " + _fmt.kv(step.attributes), style=_DIM)
    if step.error_type or step.error_message:
        text.append("  " + _fmt.error_text(step.error_type, step.error_message), style="red")
    return text


def _artifact_label(name: str, value: object) -> Text:
    text = Text.assemble(("◆ ", "magenta"), (_v(name), "magenta"), " = ")
    text.append(_v(_fmt.artifact_preview(value)))
    return text


def _event_label(detail: FlowDetail, event: FlowEvent) -> Text:
    text = Text.assemble(("⚑ ", "blue"), (_v(event.name), "blue"))
    text.append(f"  {_fmt.offset(event.ts_ns, detail.start_ns)}", style=_DIM)
    if event.attributes:
        text.append("  " + _fmt.kv(event.attributes))
    return text


def _log_label(detail: FlowDetail, entry: LogEntry) -> Text:
    level = _v(entry.severity or "LOG")
    style = "red" if level in ("ERROR", "FATAL") else "yellow" if level == "WARN" else _DIM
    text = Text.assemble(("≡ ", _DIM), (f"{level:<5}", style), " ", _v(entry.body or ""))
    text.append(f"  {_fmt.offset(entry.ts_ns, detail.start_ns)}", style=_DIM)
    if entry.logger:
        text.append(f"  {_v(entry.logger)}", style=_DIM)
    return text


def timeline(detail: FlowDetail, *, logs: bool = False) -> Tree:
    """The flow as a ``rich.tree.Tree``; with ``logs=True`` its captured log records too."""
    root = Tree(_header(detail), guide_style=_DIM)
    tree = _fmt.children_of(detail)
    by_span = {s.span_id: s for s in detail.steps}
    extras: dict[str | None, list[tuple[int, Text]]] = {}
    for event in detail.events:
        owner = event.span_id if event.span_id in by_span else None
        extras.setdefault(owner, []).append((event.ts_ns or 0, _event_label(detail, event)))
    if logs:
        for entry in detail.logs:
            owner = entry.span_id if entry.span_id in by_span else None
            extras.setdefault(owner, []).append((entry.ts_ns or 0, _log_label(detail, entry)))

    def add(node: Tree, parent: str | None) -> None:
        items: list[tuple[int, int, Text | Step]] = [
            (s.start_ns or 0, 1, s) for s in tree.get(parent, [])
        ]
        items += [(ts, 0, label) for ts, label in extras.get(parent, [])]
        for _, _, item in sorted(items, key=lambda i: (i[0], i[1])):
            if isinstance(item, Step):
                child = node.add(_step_label(detail, item))
                for name, value in item.artifacts.items():
                    child.add(_artifact_label(name, value))
                add(child, item.span_id)
            else:
                node.add(item)

    add(root, None)
    for name in detail.pending_steps:
        root.add(
            Text(f"{_fmt.symbol(_fmt.PENDING)} {_v(name)}  pending", style=_fmt.STYLES["pending"])
        )
    for child in detail.children:
        label = Text.assemble(("↳ child flow ", _DIM), (_v(child.name or "?"), "bold"), " ")
        label.append(_v(child.id), style=_DIM)
        label.append("  ")
        label.append_text(status_label(child.status))
        label.append("  " + _fmt.duration(child.duration_ms))
        root.add(label)
    return root


def timeline_with_logs(detail: FlowDetail) -> RenderableType:
    """The tree, then a plain list of every captured log record (including unplaced ones)."""
    if not detail.logs:
        return Group(timeline(detail), Text("no log records captured for this flow", style=_DIM))
    lines: list[RenderableType] = [timeline(detail, logs=True), Text("")]
    lines.append(Text(f"logs ({len(detail.logs)})", style="bold"))
    for entry in detail.logs:
        line = Text(f"{_fmt.clock(entry.ts_ns)}  ", style=_DIM)
        line.append(f"{_v(entry.severity or 'LOG'):<5} ")
        if entry.step_name:
            line.append(f"[{_v(entry.step_name)}] ", style="cyan")
        line.append(_v(entry.body or ""))
        lines.append(line)
    return Group(*lines)
