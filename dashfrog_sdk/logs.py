"""Capture Python ``logging`` records emitted inside a flow as OTel log records.

``install_logging_capture(logger_provider)`` attaches one OpenTelemetry ``LoggingHandler`` to the
root logger. Its filter lets through only records emitted while a flow is current, and stamps
them with the flow's attributes (id, name, tenant, labels, parent id) and the current step's
name, so a backend, or ``dashfrog flow ID --logs``, can show them under their flow and step.

Loggers' own levels still decide what is emitted: capture does not lower the root logger's
level (an application that leaves it at WARNING sends no INFO records to any handler).

``install_print_capture(logger_provider)`` (opt-in, ``DASHFROG_CAPTURE_PRINT``) does the same for
``print()``: it replaces ``sys.stdout`` with a stream that writes everything to the stream it
replaced first, then turns each complete line written inside a flow into a log record of the
instrumentation scope ``print`` (c.PRINT_LOGGER), with the flow's attributes and step name.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import traceback
import warnings
from time import time_ns
from typing import Any, TextIO

from opentelemetry import context as otel_context
from opentelemetry._logs import Logger, LoggerProvider, LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggingHandler

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, text
from dashfrog_sdk.context import current_step_name, flow_state
from dashfrog_sdk.error_text import raw_str

# Records from these loggers are never captured: exporting them could log again, forever.
_IGNORED_PREFIXES = ("opentelemetry", "dashfrog_sdk")

_lock = threading.Lock()
_installed: LoggingHandler | None = None


class FlowLogFilter(logging.Filter):
    """Pass records emitted inside a flow, with the flow's attributes and step name added.

    The attributes are set on the ``logging.LogRecord`` (as ``extra=`` would), which is how the
    OTel ``LoggingHandler`` turns them into log record attributes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._busy = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(_IGNORED_PREFIXES) or getattr(self._busy, "on", False):
            return False
        self._busy.on = True
        try:
            state = flow_state()
            if state is None:
                return False
            for key, value in state.attributes.items():
                setattr(record, key, value)
            step = current_step_name()
            if step is not None:
                setattr(record, c.STEP_NAME, step)
            return True
        except Exception as error:  # instrumentation never breaks logging
            diagnostics.internal_error("logs.filter_errors", error, "the flow log filter")
            return False
        finally:
            self._busy.on = False


class FlowLogHandler(LoggingHandler):
    """OTel's ``LoggingHandler``, given a cleaned copy of a record whose text has a lone
    surrogate (dashfrog_sdk.text): such a record would make the OTLP encoder and the store
    refuse the whole batch it travels in. Other handlers keep the record as it was."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record = _cleaned(record)
        except Exception as error:  # instrumentation never breaks logging
            diagnostics.internal_error("logs.filter_errors", error, "the flow log handler")
            return
        super().emit(record)


def _cleaned(record: logging.LogRecord) -> logging.LogRecord:
    message = record.getMessage()
    exc = record.exc_info[1] if record.exc_info else None
    exc_text = None if exc is None else raw_str(exc)
    if not text.has_lone_surrogate(message) and not (
        exc_text is not None and text.has_lone_surrogate(exc_text)
    ):
        return record
    out = copy.copy(record)
    out.msg, out.args = text.clean(message), None
    if exc is not None and record.exc_info is not None and exc_text is not None:
        # What OTel's handler derives from exc_info, cleaned, as the record's own attributes.
        kind, _, tb = record.exc_info
        out.exc_info, out.exc_text = None, None
        stack = "".join(traceback.format_exception(kind, exc, tb))
        setattr(out, "exception.type", getattr(kind, "__name__", type(exc).__name__))
        setattr(out, "exception.message", text.clean(exc_text))
        setattr(out, "exception.stacktrace", text.clean(stack))
    return out


def install_logging_capture(
    logger_provider: LoggerProvider, level: int = logging.INFO
) -> logging.Handler:
    """Attach the flow log handler to the root logger (once); return it.

    Calling it again returns the installed handler, after re-targeting it if a different
    ``logger_provider`` or ``level`` is given.
    """
    global _installed
    with _lock:
        root = logging.getLogger()
        if _installed is not None:
            if getattr(_installed, "_logger_provider", None) is logger_provider:
                _installed.setLevel(level)
                if _installed not in root.handlers:
                    root.addHandler(_installed)
                return _installed
            root.removeHandler(_installed)
        with warnings.catch_warnings():
            # The SDK's handler is deprecated in favour of opentelemetry-instrumentation-logging,
            # which is not a dependency; it is the same translation.
            warnings.simplefilter("ignore", DeprecationWarning)
            handler = FlowLogHandler(level=level, logger_provider=logger_provider)
        handler.addFilter(FlowLogFilter())
        root.addHandler(handler)
        _installed = handler
        diagnostics.set_capture_handler(handler)
        return handler


def uninstall_logging_capture() -> None:
    """Detach the handler installed by :func:`install_logging_capture` (no-op if none)."""
    global _installed
    with _lock:
        if _installed is not None:
            logging.getLogger().removeHandler(_installed)
            _installed = None
            diagnostics.set_capture_handler(None)


# -- print() -------------------------------------------------------------------------------------

MAX_PRINT_LINE = 8192  # characters: a longer line without a newline is sent in pieces this long


class FlowStdout:
    """``sys.stdout`` while print() capture is on (see the module docstring).

    Thread-safe: each thread keeps its own partial line (``print(..., end="")``), tied to the
    flow it was written in. Never raises into the application: the write to the real stream
    happens first and as before; capture trouble is counted (``logs.print_errors``).
    """

    def __init__(self, wrapped: TextIO, logger: Logger) -> None:
        self.dashfrog_wrapped = wrapped  # the real stream (the console sink writes to it)
        self._logger = logger
        self._local = threading.local()
        self.capturing = True

    def write(self, text: str) -> int:
        written = self.dashfrog_wrapped.write(text)
        if self.capturing and text:
            try:
                self._capture(text)
            except Exception as error:  # print() must never fail because of the SDK
                diagnostics.internal_error("logs.print_errors", error, "print() capture")
        return written

    def _capture(self, text: str) -> None:
        local = self._local
        if getattr(local, "busy", False):
            return
        state = flow_state()
        if state is None:
            return
        flow_id = state.attributes.get(c.FLOW_ID)
        pending = getattr(local, "pending", None)
        buffer = pending[1] + text if pending is not None and pending[0] == flow_id else text
        *lines, rest = buffer.split("\n")
        while len(rest) >= MAX_PRINT_LINE:
            lines.append(rest[:MAX_PRINT_LINE])
            rest = rest[MAX_PRINT_LINE:]
        local.pending = (flow_id, rest) if rest else None
        if not lines:
            return
        local.busy = True
        try:
            attributes: dict[str, Any] = dict(state.attributes)
            step = current_step_name()
            if step is not None:
                attributes[c.STEP_NAME] = step
            now = time_ns()
            context = otel_context.get_current()
            for line in lines:
                self._logger.emit(
                    LogRecord(
                        timestamp=now,
                        observed_timestamp=now,
                        context=context,
                        severity_text="INFO",
                        severity_number=SeverityNumber.INFO,
                        body=line,
                        attributes=attributes,
                    )
                )
        finally:
            local.busy = False

    def flush(self) -> None:
        self.dashfrog_wrapped.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, buffer...
        return getattr(self.dashfrog_wrapped, name)


_print_lock = threading.Lock()
_print_installed: FlowStdout | None = None


def install_print_capture(logger_provider: LoggerProvider) -> FlowStdout:
    """Replace ``sys.stdout`` with a :class:`FlowStdout` writing to it (once); return it."""
    global _print_installed
    with _print_lock:
        logger = logger_provider.get_logger(c.PRINT_LOGGER)
        current = sys.stdout
        if isinstance(current, FlowStdout):
            current._logger, current.capturing = logger, True
            _print_installed = current
            return current
        _print_installed = sys.stdout = FlowStdout(current, logger)
        return _print_installed


def uninstall_print_capture() -> None:
    """Give ``sys.stdout`` back (or, if something replaced it since, stop capturing)."""
    global _print_installed
    with _print_lock:
        installed = _print_installed
        if installed is None:
            return
        installed.capturing = False
        if sys.stdout is installed:
            sys.stdout = installed.dashfrog_wrapped
        _print_installed = None
