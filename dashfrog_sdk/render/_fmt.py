"""Formatting shared by the renderers: durations, times, statuses, step trees."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dashfrog_sdk import conventions as c
from dashfrog_sdk import status
from dashfrog_sdk.store.model import FlowDetail, Step, ns_to_datetime

PENDING = "pending"

SYMBOLS = {**status.SYMBOLS, PENDING: "○"}

# rich styles per status (the terminal's palette; Mermaid uses the hex colours).
STYLES = {
    c.COMPLETED: "green",
    c.FAILED: "bold red",
    c.RUNNING: "dark_orange",
    c.CANCELLED: "yellow",
    c.TIMED_OUT: "magenta",
    PENDING: "grey50",
}


# What a terminal (or a Markdown/Mermaid viewer) could act on rather than show: C0 and C1
# control characters (ESC, CSI, OSC, BEL, CR, ...), DEL, and the bidi controls that reorder text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """`value` as text with every control character shown as an escape (``\\x1b``, ``\\n``).

    Every user-supplied string the renderers and the CLI print goes through this (idempotent).
    """
    text = str(value)
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def symbol(status: str) -> str:
    return SYMBOLS.get(status, "?")


def status_text(status: str) -> str:
    """``✔ completed``: a status with its symbol."""
    return f"{symbol(status)} {status}"


def duration(ms: float | None) -> str:
    """Milliseconds for people: ``0.42 ms``, ``12.3 ms``, ``1.24 s``, ``2m 03s``, ``1h 02m``."""
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.2f} s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"


def offset(ns: int | None, origin: int | None) -> str:
    """``+12.3 ms``: when something happened, relative to the flow's start."""
    if ns is None or origin is None:
        return ""
    return "+" + duration(max(0, ns - origin) / 1e6)


def clock(ns: int | None, *, date: bool = True) -> str:
    """A local wall-clock time (``2024-05-01 12:00:03.120``)."""
    moment = ns_to_datetime(ns)
    if moment is None:
        return "-"
    local = moment.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if date else local.strftime("%H:%M:%S")


def utc(ns: int | None) -> str:
    moment: datetime | None = ns_to_datetime(ns)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC" if moment else "-"


def kv(values: Mapping[str, Any]) -> str:
    """``k=v k2=v2`` for labels and attributes."""
    return " ".join(f"{visible(k)}={visible(v)}" for k, v in values.items())


def event_text(name: str, attributes: Mapping[str, Any]) -> str:
    """``payment_retried attempt=2``: a custom event with its attributes."""
    return f"{visible(name)} {kv(attributes)}" if attributes else visible(name)


# _CONTROL less the C0 controls, which json.dumps escapes inside strings itself (and the
# newlines of indented JSON are its layout).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ARTIFACT_PREVIEW = 200  # characters of an artifact's JSON a one-line view shows


def artifact_json(value: object, *, indent: int | None = None) -> str:
    """An artifact's value as JSON text (compact, or indented for a document), with no
    character a terminal or a Markdown viewer could act on."""
    separators = (",", ":") if indent is None else None
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    # json escapes C0 controls itself; DEL, C1 and bidi controls can only be inside strings,
    # where \uXXXX means the same and no terminal or viewer acts on it.
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def artifact_preview(value: object) -> str:
    """The value's compact JSON, cut to ARTIFACT_PREVIEW characters (``--json`` has it all)."""
    text = artifact_json(value)
    if len(text) <= ARTIFACT_PREVIEW:
        return text
    return text[: ARTIFACT_PREVIEW - 1] + "… (see --json)"


def error_text(error_type: str | None, error_message: str | None) -> str:
    if error_type and error_message:
        return visible(f"{error_type}: {error_message}")
    return visible(error_type or error_message or "")


def children_of(detail: FlowDetail) -> dict[str | None, list[Step]]:
    """Steps grouped by enclosing step span id (``None``: directly under the flow), in order."""
    tree: dict[str | None, list[Step]] = {}
    for step in detail.steps:
        tree.setdefault(step.parent_step_id, []).append(step)
    return tree


def walk(detail: FlowDetail) -> list[Step]:
    """Steps depth-first (each step followed by its nested steps), siblings in start order."""
    tree = children_of(detail)
    out: list[Step] = []

    def visit(parent: str | None) -> None:
        for step in tree.get(parent, []):
            out.append(step)
            visit(step.span_id)

    visit(None)
    return out


def step_status(detail: FlowDetail, step: Step) -> str:
    """A step's status as shown: a step still 'running' in an ended flow never finished."""
    if step.status == c.RUNNING and detail.status not in c.OPEN:
        return c.CANCELLED
    return step.status


def step_notes(step: Step, now_ns: int | None = None) -> str:
    """What a step's options say, for the CLI and the Markdown document: retried, its timeout
    (and, for a step still running at `now_ns`, that it is past it), error isolation (empty for
    a step with none)."""
    notes = []
    if step.retried:
        notes.append("retried")
    if step.timeout_s is not None:
        notes.append(f"timeout {duration(step.timeout_s * 1000)}")
        running_for = (
            now_ns - step.start_ns
            if now_ns is not None and step.status == c.RUNNING and step.start_ns is not None
            else None
        )
        if running_for is not None and running_for > step.timeout_s * 1e9:
            notes.append("past its timeout")
    if not step.raise_on_error:
        notes.append("raise_on_error=False: the flow went on")
    return f" ({', '.join(notes)})" if notes else ""
