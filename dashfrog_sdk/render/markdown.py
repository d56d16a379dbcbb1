"""A flow as a Markdown dataflow document.

Sections: summary, trigger, end state, sequence diagram (Mermaid), step-by-step trace with each
step's inputs and progress, the steps' output (their artifacts, as JSON blocks), error paths, events, child flows, a performance table and (if any) logs.
"""

from __future__ import annotations

import re

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render import _fmt
from dashfrog_sdk.render.mermaid import sequence_diagram
from dashfrog_sdk.store.model import FlowDetail


def _one_line(value: object) -> str:
    return " ".join(_fmt.visible(value).split())


_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_TICKS = re.compile(r"`+")


def _cell(value: object) -> str:
    """Plain text shown literally in Markdown, table cells included: one line, every ASCII
    punctuation character backslash-escaped (CommonMark allows it for all of them), so no
    emphasis, link, HTML, entity or cell separator can come out of it."""
    return _PUNCTUATION.sub(r"\\\1", _one_line(value))


def _code(value: object, *, cell: bool = False) -> str:
    """`value` as a code span: its fence is longer than any backtick run inside, so the value
    cannot close it early (code spans show everything else literally, HTML included). In a
    table cell (`cell=True`) pipes are escaped: GFM splits cells before it reads code spans."""
    raw = _one_line(value)
    longest = max((len(run) for run in _TICKS.findall(raw)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if raw.startswith("`") or raw.endswith("`") or not raw.strip() else ""
    if cell:
        raw = raw.replace("|", "\\|")
    return f"{fence}{pad}{raw}{pad}{fence}"


def _fenced(info: str, body: str) -> list[str]:
    """A fenced code block that no line of `body` can close."""
    longest = max((len(run) for run in _TICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, body.rstrip("\n"), fence]


def _summary(detail: FlowDetail) -> list[str]:
    rows = [
        ("Flow id", _code(detail.id, cell=True)),
        ("Name", _code(detail.name, cell=True)),
        ("Tenant", _code(detail.tenant, cell=True)),
        (
            "Labels",
            ", ".join(_code(f"{k}={v}", cell=True) for k, v in detail.labels.items()) or "-",
        ),
        ("Status", _fmt.status_text(detail.status)),
        ("Started", _fmt.utc(detail.start_ns)),
        ("Ended", _fmt.utc(detail.end_ns)),
        ("Duration", _fmt.duration(detail.duration_ms)),
        ("Services", ", ".join(_code(s, cell=True) for s in detail.services) or "-"),
        ("Trace", _code(detail.trace_id, cell=True) if detail.trace_id else "-"),
    ]
    if detail.parent_id:
        rows.append(("Parent flow", _code(detail.parent_id, cell=True)))
    if detail.timeout_s is not None:
        rows.append(("Timeout", _fmt.duration(detail.timeout_s * 1000)))
    out = ["| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return out


def _trigger(detail: FlowDetail) -> list[str]:
    who = f"service {_code(detail.service)}" if detail.service else "an unknown service"
    text = f"Started by {who} at {_fmt.utc(detail.start_ns)}"
    if detail.span_id:
        text += f" (flow span {_code(detail.span_id)})"
    text += "."
    if detail.parent_id:
        text += f" It is a child flow of {_code(detail.parent_id)}."
    first = detail.steps[0] if detail.steps else None
    if first:
        text += f" Its first step was {_code(first.name)}"
        text += f" in {_code(first.service)}." if first.service else "."
    return [text]


def _end_state(detail: FlowDetail) -> list[str]:
    status = detail.status
    if status == c.RUNNING:
        where = f" at step {_code(detail.current_step)}" if detail.current_step else ""
        return [f"**Still running**{where}, {_fmt.duration(detail.duration_ms)} so far."]
    if status == c.TIMED_OUT:
        where = f" at step {_code(detail.current_step)}" if detail.current_step else ""
        return [
            f"**Timed out**{where}: no end within its {_fmt.duration((detail.timeout_s or 0) * 1000)}"
            " timeout."
        ]
    text = f"**{status.capitalize()}** after {_fmt.duration(detail.duration_ms)}"
    text += f", at {_fmt.utc(detail.end_ns)}."
    error = _fmt.error_text(detail.error_type, detail.error_message)
    if error:
        text += f" Error: {_code(error)}."
    failed = [s for s in detail.steps if s.failed_flow]
    if failed:
        text += f" Failed at step {_code(failed[0].label)}."
    return [text]


def _trace(detail: FlowDetail) -> list[str]:
    out: list[str] = []
    numbers: dict[int, int] = {}
    for step in _fmt.walk(detail):
        numbers = {d: n for d, n in numbers.items() if d <= step.depth}
        numbers[step.depth] = numbers.get(step.depth, 0) + 1
        indent = "   " * step.depth
        status = _fmt.step_status(detail, step)
        line = f"{indent}{numbers[step.depth]}. {_code(step.label)}"
        if step.service:
            line += f" in {_code(step.service)}"
        line += f" at +{_fmt.offset(step.start_ns, detail.start_ns).lstrip('+') or '?'}"
        line += f": {_fmt.status_text(status)}"
        if status != c.RUNNING:
            line += f" in {_fmt.duration(step.duration_ms)}"
        if step.progress is not None:
            line += f", progress {_code(step.progress.text())}"
        if step.optional:
            line += " (optional)"
        line += _fmt.step_notes(step)
        out.append(line)
        if step.attributes:
            inputs = ", ".join(_code(f"{k}={v}") for k, v in step.attributes.items())
            out.append(f"{indent}   - inputs: {inputs}")
        error = _fmt.error_text(step.error_type, step.error_message)
        if error:
            out.append(f"{indent}   - error: {_code(error)}")
        if step.artifacts:
            names = ", ".join(_code(name) for name in step.artifacts)
            out.append(f"{indent}   - output: {names} (see Output)")
        for event in detail.events:
            if event.span_id == step.span_id:
                out.append(
                    f"{indent}   - event: {_code(_fmt.event_text(event.name, event.attributes))}"
                )
    for name in detail.pending_steps:
        out.append(f"- {_code(name)}: pending (seen in the last completed run, not reached yet)")
    return out or ["No steps recorded."]


def _output(detail: FlowDetail) -> list[str]:
    """Each step's artifacts: a heading naming the step and the artifact, then its JSON in a
    fenced block (which no line of the value can close: hostile strings stay data)."""
    out: list[str] = []
    for step in _fmt.walk(detail):
        for name, value in step.artifacts.items():
            if out:
                out.append("")
            out.append(f"### {_code(step.label)} → {_code(name)}")
            out.append("")
            out += _fenced("json", _fmt.artifact_json(value, indent=2))
    return out


def _errors(detail: FlowDetail) -> list[str]:
    out = []
    for step in detail.steps:
        if step.status not in (c.FAILED, c.TIMED_OUT):
            continue
        error = _fmt.error_text(step.error_type, step.error_message) or "no error recorded"
        if step.retried:
            effect = "it was retried"
        elif step.optional:
            effect = "the flow went on (optional step)"
        elif not step.raise_on_error:
            effect = "the flow went on (raise_on_error=False)"
        else:
            effect = "the flow failed"
        where = f" in {_code(step.service)}" if step.service else ""
        verb = "timed out with" if step.status == c.TIMED_OUT else "raised"
        out.append(f"- {_code(step.label)}{where} {verb} {_code(error)}: {effect}.")
    flow_error = _fmt.error_text(detail.error_type, detail.error_message)
    if flow_error and not out:
        out.append(f"- The flow itself ended with {_code(flow_error)}.")
    if detail.status == c.TIMED_OUT:
        out.append("- The flow passed its timeout without an end.")
    return out or ["None: no step failed."]


def _performance(detail: FlowDetail) -> list[str]:
    out = [
        "| Step | Service | Status | Start | Duration | Share of flow |",
        "|---|---|---|---|---|---|",
    ]
    total = detail.duration_ms
    for step in _fmt.walk(detail):
        share = (
            f"{100 * step.duration_ms / total:.1f} %"
            if step.duration_ms is not None and total
            else "-"
        )
        name = ("↳ " * min(step.depth, 1)) + ("  " * max(step.depth - 1, 0))
        name += _code(step.label, cell=True)
        service = _code(step.service, cell=True) if step.service else "-"
        out.append(
            f"| {name} | {service} "
            f"| {_fmt.status_text(_fmt.step_status(detail, step))} "
            f"| {_fmt.offset(step.start_ns, detail.start_ns) or '-'} "
            f"| {_fmt.duration(step.duration_ms)} | {share} |"
        )
    service = _code(detail.service, cell=True) if detail.service else "-"
    out.append(
        f"| **flow total** | {service} | {_fmt.status_text(detail.status)} | +0 "
        f"| {_fmt.duration(total)} | 100 % |"
    )
    return out


def markdown(detail: FlowDetail, *, logs: bool = True) -> str:
    """The dataflow document of one flow."""
    out = [f"# Flow {_code(detail.name)} for tenant {_code(detail.tenant)}: {detail.status}", ""]
    out += _summary(detail)
    out += ["", "## Trigger", "", *_trigger(detail)]
    out += ["", "## End state", "", *_end_state(detail)]
    out += ["", "## Sequence", "", *_fenced("mermaid", sequence_diagram(detail))]
    out += ["", "## Step-by-step trace", "", *_trace(detail)]
    output = _output(detail)
    if output:
        out += ["", "## Output", "", *output]
    out += ["", "## Error paths", "", *_errors(detail)]
    if detail.events:
        out += ["", "## Events", ""]
        for event in detail.events:
            at = _fmt.offset(event.ts_ns, detail.start_ns)
            out.append(
                f"- {at} {_code(_fmt.event_text(event.name, event.attributes))}"
                + (f" in step {_code(event.step_name)}" if event.step_name else "")
            )
    if detail.children:
        out += ["", "## Child flows", ""]
        for child in detail.children:
            out.append(
                f"- {_code(child.name)} {_code(child.id)}: {_fmt.status_text(child.status)}"
                f" in {_fmt.duration(child.duration_ms)}"
            )
    out += ["", "## Performance", "", *_performance(detail)]
    if logs and detail.logs:
        out += ["", "## Logs", "", "| Time | Level | Step | Message |", "|---|---|---|---|"]
        for entry in detail.logs:
            out.append(
                f"| {_fmt.offset(entry.ts_ns, detail.start_ns)} | {_cell(entry.severity or '-')} "
                f"| {_code(entry.step_name, cell=True) if entry.step_name else '-'} | {_cell(entry.body or '')} |"
            )
    return "\n".join(out) + "\n"
