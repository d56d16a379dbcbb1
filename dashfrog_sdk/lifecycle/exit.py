"""Nothing lost on exit: SIGTERM becomes a normal exit, and flows still open are recorded.

* **SIGTERM.** Python's default action kills the process on the spot: no `finally`, no atexit,
  every queued span lost. When the application has no handler of its own, dashfrog installs one
  that raises ``SystemExit(143)`` in the main thread (as Ctrl-C raises KeyboardInterrupt): flows
  unwind and end ``cancelled``, and the atexit flush delivers them. A second SIGTERM kills at
  once (the default action is restored first). An application (or server: gunicorn, uvicorn,
  Celery) that installed its own handler keeps it, untouched.
* **Flows open at exit** (a daemon thread still inside ``flow.start``, a scope entered by hand
  and never exited) are not forgotten: at shutdown each one gets a ``dashfrog.flow.end`` event
  with status ``cancelled`` and ``dashfrog.error.type = ProcessExit`` (``failed``, with the
  step's error, if a step had failed: the precedence of dashfrog_sdk.status). Their span never ended,
  so it is not exported; the end event carries the flow's trace id, span id and start time, as
  for an end in another process.
"""

from __future__ import annotations

import logging
import signal
import threading
from time import time_ns
from types import FrameType
from typing import Any

from dashfrog_sdk import _fork, diagnostics, status
from dashfrog_sdk import conventions as c
from dashfrog_sdk.context import FlowState
from dashfrog_sdk.lifecycle import records

logger = logging.getLogger("dashfrog_sdk")

MAX_TRACKED = 100_000  # open flows remembered; beyond, new ones are not (and are counted)


class ProcessExit(Exception):
    """Recorded as the error of a flow that was still open when its process exited."""


class OpenFlows:
    """The flows whose `with flow.start(...)` block is open in this process.

    Kept by the calling thread itself (a set add and discard per flow), so the lifecycle records
    need not hold the `FlowState` (see lifecycle.records.Lifecycle). Single set operations are atomic under
    the GIL; `close_all` swaps the set out before reading it.
    """

    def __init__(self) -> None:
        self._open: set[FlowState] = set()

    def add(self, state: FlowState) -> None:
        live = self._open
        if len(live) < MAX_TRACKED:
            live.add(state)
        else:
            diagnostics.count("exit.untracked_flows")

    def discard(self, state: FlowState) -> None:
        self._open.discard(state)

    def close_all(self, reason: str) -> int:
        """Record a cancelled end for every flow still open; returns how many."""
        still_open, self._open = self._open, set()
        now = time_ns()
        ended: dict[str, int] = {}
        for state in list(still_open):
            if state.ended:
                continue
            # Cancelled, or failed if a step had failed: the one precedence of status.py.
            final = status.end(state, c.CANCELLED)
            ended[final] = ended.get(final, 0) + 1
            error = ProcessExit(reason) if final == c.CANCELLED else None
            records.flow_ended(state, final, now, state.trace_id, state.span_id, error)
        for shown, n in sorted(ended.items()):
            logger.warning(
                "dashfrog_sdk: %d flow(s) still open at exit were recorded as %s", n, shown
            )
        return sum(ended.values())

    def __len__(self) -> int:
        return len(self._open)


open_flows = OpenFlows()


def _forget_after_fork() -> None:
    # A forked child did not start the parent's open flows: ending them is the parent's job.
    open_flows._open = set()


_fork.in_child(_forget_after_fork)

_installed_handler: Any = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Restore the default first: a second SIGTERM from an impatient supervisor kills at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def install_sigterm() -> bool:
    """Install the SIGTERM handler if the application has none. True if installed."""
    global _installed_handler
    if threading.current_thread() is not threading.main_thread():
        return False  # signal handlers can only be set from the main thread
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is not signal.SIG_DFL:  # the app's handler, SIG_IGN, or one set from C
            return False
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # pragma: no cover - embedded interpreters
        return False
    _installed_handler = _on_sigterm
    return True


def uninstall_sigterm() -> None:
    """Put the default action back, unless someone replaced our handler since."""
    global _installed_handler
    if _installed_handler is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _installed_handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):  # pragma: no cover
        pass
    _installed_handler = None
