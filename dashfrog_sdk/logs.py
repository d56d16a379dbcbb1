"""Capture Python ``logging`` records emitted inside a flow as OTel log records.

``install_logging_capture(logger_provider)`` attaches one OpenTelemetry ``LoggingHandler`` to the
root logger. Its filter lets through only records emitted while a flow is current, and stamps
them with the flow's attributes (id, name, tenant, labels, parent id) and the current step's
name, so a backend, or ``dashfrog flow ID --logs``, can show them under their flow and step.

Loggers' own levels still decide what is emitted: capture does not lower the root logger's
level (an application that leaves it at WARNING sends no INFO records to any handler).
"""

from __future__ import annotations

import logging
import threading
import warnings

from opentelemetry._logs import LoggerProvider
from opentelemetry.sdk._logs import LoggingHandler

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk.context import current_step_name, flow_state

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
            handler = LoggingHandler(level=level, logger_provider=logger_provider)
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
