"""A flow as Mermaid: a ``sequenceDiagram`` across services, and a status-coloured flowchart."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render import _fmt
from dashfrog_sdk.store.model import FlowDetail, FlowEvent, Step

# Flowchart colours per status (the palette; cancelled and timed out added).
COLOURS = {
    c.COMPLETED: ("#28a745", "#1e7e34"),
    c.FAILED: ("#dc3545", "#a71d2a"),
    c.RUNNING: ("#fd7e14", "#c35a00"),
    _fmt.PENDING: ("#6c757d", "#494f54"),
    c.CANCELLED: ("#ffc107", "#b38600"),
    c.TIMED_OUT: ("#dc3545", "#a71d2a"),
}
_CLASS = {c.TIMED_OUT: "timedout"}  # Mermaid class names: letters only, to be safe

# "`" too: a label that starts with a backtick is a Mermaid "markdown string".
_ENTITIES = {
    "#": "#35;",
    ";": "#59;",
    "<": "#lt;",
    ">": "#gt;",
    '"': "#quot;",
    "%": "#37;",
    "`": "#96;",
}
_UNSAFE = re.compile(r'[#;<>"%`]')
_SPACES = re.compile(r"\s+")


def text(value: object, limit: int = 80) -> str:
    """Arbitrary text made safe inside a Mermaid label or message (entity-encoded, one line)."""
    raw = _SPACES.sub(" ", _fmt.visible(value)).strip()
    if len(raw) > limit:
        raw = raw[: limit - 1] + "…"
    return _UNSAFE.sub(lambda m: _ENTITIES[m.group(0)], raw)


def _class_name(status: str) -> str:
    return _CLASS.get(status, status)


# -- sequence diagram ---------------------------------------------------------------------------


def sequence_diagram(detail: FlowDetail) -> str:
    """One participant per service, one message per step (from the service that ran the
    enclosing step or the flow, to the service that ran the step). Failed steps use the
    ``-x`` arrow and say FAILED; running steps use the async ``-)`` arrow."""
    services = detail.services or ["app"]
    ids = {name: f"S{i}" for i, name in enumerate(services)}
    origin = ids[detail.service] if detail.service in ids else ids[services[0]]
    by_span = {s.span_id: s for s in detail.steps}

    def participant(service: str | None) -> str:
        return ids.get(service or "", origin)

    lines = ["sequenceDiagram"]
    labels = f", {_fmt.kv(detail.labels)}" if detail.labels else ""
    lines.append(f"    title flow {text(detail.name)} · tenant {text(detail.tenant)}{text(labels)}")
    for name in services:
        lines.append(f"    participant {ids[name]} as {text(name, 60)}")
    lines.append(
        f"    Note over {origin}: flow started {text(_fmt.clock(detail.start_ns))}"
        + (f" · child of {text(detail.parent_id[:12])}" if detail.parent_id else "")
    )
    events = sorted(detail.events, key=lambda e: e.ts_ns or 0)
    for step in _fmt.walk(detail):
        while events and step.start_ns is not None and (events[0].ts_ns or 0) < step.start_ns:
            lines.append(_event_note(events.pop(0), by_span, participant))
        parent = by_span.get(step.parent_step_id or "")
        src = participant(parent.service if parent else detail.service)
        dst = participant(step.service)
        status = _fmt.step_status(detail, step)
        label = ("↳ " * min(step.depth, 1)) + text(step.label, 60)
        if status in (c.FAILED, c.TIMED_OUT):
            arrow = "-x"
            label += " FAILED" if status == c.FAILED else " TIMED OUT"
            error = _fmt.error_text(step.error_type, step.error_message)
            label += f": {text(error, 80)}" if error else ""
            if step.retried:
                label += " (retried)"
            elif step.optional or not step.raise_on_error:
                label += " (optional, flow went on)"
        elif status == c.RUNNING:
            arrow, label = "-)", label + " (running)"
        elif status == c.CANCELLED:
            arrow, label = "-x", label + " cancelled"
        else:
            arrow, label = "->>", label + f" ({text(_fmt.duration(step.duration_ms))})"
        lines.append(f"    {src}{arrow}{dst}: {label}")
    lines.extend(_event_note(e, by_span, participant) for e in events)
    for name in detail.pending_steps:
        lines.append(f"    Note over {origin}: pending: {text(name, 60)}")
    end = f"flow {detail.status}"
    if detail.status not in c.OPEN:
        end += f" in {_fmt.duration(detail.duration_ms)}"
    elif detail.current_step:
        end += f", at step {detail.current_step}"
    error = _fmt.error_text(detail.error_type, detail.error_message)
    if error:
        end += f" · {error}"
    lines.append(f"    Note over {origin}: {text(end, 120)}")
    return "\n".join(lines) + "\n"


def _event_note(
    event: FlowEvent, by_span: dict[str, Step], participant: Callable[[str | None], str]
) -> str:
    step = by_span.get(event.span_id or "")
    where = participant(step.service if step else event.service)
    return f"    Note over {where}: event {text(_fmt.event_text(event.name, event.attributes), 80)}"


# -- flowchart --------------------------------------------------------------------------------


def flowchart(detail: FlowDetail) -> str:
    """Steps as boxes coloured by status: completed green, failed red, running orange, pending
    grey (steps the last completed run of this flow had and this one has not reached).

    Top-level steps are chained in start order from the flow's start to its end; nested steps
    hang off their enclosing step with dotted arrows."""
    lines = ["flowchart TD"]
    start_label = f"flow {text(detail.name)}<br/>tenant {text(detail.tenant)}"
    if detail.labels:
        start_label += f"<br/>{text(_fmt.kv(detail.labels))}"
    lines.append(f'    F(["{start_label}"])')
    classes: dict[str, list[str]] = {}
    node = {s.span_id: f"s{i}" for i, s in enumerate(detail.steps)}
    tree = _fmt.children_of(detail)
    for step in _fmt.walk(detail):
        status = _fmt.step_status(detail, step)
        label = text(step.label, 60)
        if status == c.RUNNING:
            label += "<br/>running"
        else:
            label += f"<br/>{text(_fmt.duration(step.duration_ms))}"
        if step.service:
            label += f"<br/>{text(step.service, 40)}"
        error = _fmt.error_text(step.error_type, step.error_message)
        if error:
            label += f"<br/>{text(error, 60)}"
        lines.append(f'    {node[step.span_id]}["{label}"]')
        classes.setdefault(_class_name(status), []).append(node[step.span_id])
    pending = [f"p{i}" for i in range(len(detail.pending_steps))]
    for pid, name in zip(pending, detail.pending_steps, strict=True):
        lines.append(f'    {pid}["{text(name, 60)}<br/>pending"]')
        classes.setdefault(_fmt.PENDING, []).append(pid)
    end_status = detail.status if detail.status not in (c.RUNNING,) else _fmt.PENDING
    end_label = text(detail.status)
    if detail.status not in c.OPEN:
        end_label += f"<br/>{text(_fmt.duration(detail.duration_ms))}"
    lines.append(f'    E(["{end_label}"])')
    classes.setdefault(_class_name(end_status), []).append("E")
    classes.setdefault(_class_name(detail.status), []).append("F")

    chain = ["F", *(node[s.span_id] for s in tree.get(None, [])), *pending, "E"]
    for a, b in itertools.pairwise(chain):
        lines.append(f"    {a} --> {b}")
    for step in detail.steps:
        kids = [node[k.span_id] for k in tree.get(step.span_id, [])]
        if kids:
            lines.append(f"    {node[step.span_id]} -.-> {kids[0]}")
            for a, b in itertools.pairwise(kids):
                lines.append(f"    {a} --> {b}")
    for status, (fill, stroke) in COLOURS.items():
        lines.append(
            f"    classDef {_class_name(status)} fill:{fill},stroke:{stroke},color:#ffffff"
        )
    for name, members in classes.items():
        lines.append(f"    class {','.join(members)} {name}")
    return "\n".join(lines) + "\n"
