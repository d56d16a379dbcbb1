"""The embedded console: flows and steps printed as a live tree as they start and end.

Written by hand rather than with `rich` because the core package depends only on OpenTelemetry
(rich is in the `cli` extra); it is a lifecycle sink, so it runs on the dispatcher thread and
never does I/O on the caller's thread.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from dashfrog_sdk import conventions as c
from dashfrog_sdk import progress
from dashfrog_sdk.error_text import describe
from dashfrog_sdk.lifecycle.records import Lifecycle
from dashfrog_sdk.status import SYMBOLS

# dashfrog_sdk.status.SYMBOLS, in ANSI colours.
_MARKS = {
    name: (SYMBOLS[name], code)
    for name, code in (
        (c.COMPLETED, "32"),
        (c.FAILED, "31"),
        (c.CANCELLED, "33"),
        (c.RUNNING, "36"),
        (c.TIMED_OUT, "35"),
    )
}


_PREVIEW = 80  # characters of an artifact's JSON the console shows


class ConsoleSink:
    """Print lifecycle records as indented lines: `▶ flow order  tenant=acme`, `✔ step charge 3 ms`."""

    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        self.stream = stream
        self._color = color

    def _out(self) -> TextIO:
        # Past print() capture (dashfrog_sdk.logs): the console is no print() of a flow.
        out = self.stream or sys.stdout
        return getattr(out, "dashfrog_wrapped", out)

    def _use_color(self, out: TextIO) -> bool:
        if self._color is not None:
            return self._color
        return "NO_COLOR" not in os.environ and hasattr(out, "isatty") and out.isatty()

    def __call__(self, batch: Sequence[Lifecycle]) -> None:
        out = self._out()
        color = self._use_color(out)
        lines = [line for event in batch if (line := render_line(event, color))]
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def _ms(duration_ns: int) -> str:
    ms = duration_ns / 1e6
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _error(error: BaseException | str | None) -> str:
    return "" if error is None else f"  {describe(error)}"


def _attempt(attributes: Mapping[str, Any]) -> str:
    """`` attempt 2/4`` for a step with retries (``, retrying`` when another attempt follows)."""
    attempt = attributes.get(c.STEP_ATTEMPT)
    if attempt is None:
        return ""
    retrying = ", retrying" if attributes.get(c.STEP_RETRIED) else ""
    return f" (attempt {attempt}/{attributes.get(c.STEP_ATTEMPTS, '?')}{retrying})"


# The last second rendered and its "HH:MM:SS" (a batch holds thousands of records in the same
# few seconds: strftime and localtime once a second, not once a line). One tuple, replaced
# whole, so a reader on another thread never sees a second with another second's text.
_last_second: tuple[int, str] = (-1, "")


def _clock(time_ns: int) -> str:
    global _last_second
    second = time_ns // 1_000_000_000
    cached = _last_second
    if cached[0] != second:
        cached = _last_second = (second, time.strftime("%H:%M:%S", time.localtime(second)))
    return f"{cached[1]}.{time_ns // 1_000_000 % 1000:03d}"


def render_line(event: Lifecycle, color: bool = False) -> str | None:
    """One console line for `event`, or None for kinds the console does not show."""
    kind = event.kind
    if kind == c.EVENT_STEP_START:  # the commonest lines first, computing only what they show
        attempt = _attempt(event.attributes) if event.attributes else ""
        return f"{_clock(event.time_ns)} {'  ' * event.depth}▶ step {event.step}{attempt}"
    flow = event.flow
    clock = _clock(event.time_ns)
    indent = "  " * event.depth
    status = event.status or c.COMPLETED
    extra = event.attributes or {}
    if kind == c.STEP_END:
        mark, code = _MARKS.get(status, ("•", "0"))
        text = f"{mark} step {event.step}{_attempt(extra)}  {status}  {_ms(event.duration_ns)}"
        return f"{clock} {indent}{_paint(text, code, color)}{_error(event.error)}"
    if kind == c.EVENT_STEP_PROGRESS:
        done = progress.text(
            event.step,
            extra.get(c.STEP_PROGRESS_DONE, 0),
            extra.get(c.STEP_PROGRESS_TOTAL),
            extra.get(c.STEP_PROGRESS_MESSAGE),
        )
        return f"{clock} {indent}  … step {done}"
    if kind == c.EVENT_STEP_ARTIFACT:
        value = str(extra.get(c.ARTIFACT_VALUE, ""))
        shown = value if len(value) <= _PREVIEW else value[: _PREVIEW - 1] + "…"
        artifact = extra.get(c.ARTIFACT_NAME)
        return f"{clock} {indent}  ◆ artifact {artifact} of step {event.step} = {shown}"
    name, flow_id = flow.get(c.FLOW_NAME), str(flow.get(c.FLOW_ID, ""))[:8]
    if kind == c.EVENT_FLOW_START:
        labels = "".join(f" {k}={v}" for k, v in c.labels_of(flow).items())
        parent_id = flow.get(c.FLOW_PARENT_ID)
        parent = f"  child of {str(parent_id)[:8]}" if parent_id else ""
        head = _paint(f"▶ flow {name}", "1", color)
        tenant = flow.get(c.TENANT)
        return f"{clock} {indent}{head}  tenant={tenant}{labels}  id={flow_id}{parent}"
    mark, code = _MARKS.get(status, ("•", "0"))
    if kind == c.FLOW_CLOSE:
        if status == c.RUNNING:
            text = f"{mark} flow {name}  handed off, still running  id={flow_id}"
        else:
            text = f"{mark} flow {name}  {status}  {_ms(event.duration_ns)}"
        return f"{clock} {indent}{_paint(text, code, color)}{_error(event.error)}"
    if kind == c.EVENT_FLOW_END:
        took = f"  {_ms(event.duration_ns)} since start" if event.duration_ns else ""
        text = f"{mark} flow {name}  ended {status}{took}  id={flow_id}"
        return f"{clock} {indent}{_paint(text, code, color)}{_error(event.error)}"
    if kind == c.EVENT_FLOW_EVENT:
        rest = "".join(f" {k}={v}" for k, v in extra.items() if k != c.EVENT_NAME_ATTR)
        return f"{clock} {indent}  • {extra.get(c.EVENT_NAME_ATTR)}{rest}"
    return None
